/**
 * Reports the proxy's endpoint health (outlier detection, active checks) to the control plane over
 * the config stream: the whole view on every (re)connect, and again after changes, at most once per
 * `minIntervalMs` (a burst of ejections is one report). A view equal to the one last sent on this
 * stream is not sent again, and a proxy that watches no cluster sends nothing (an empty view goes
 * once, only to withdraw one sent before). Nothing runs on the request path.
 */
import type { EndpointHealthReport } from '../../model/endpoint-health.js';

/** The least time between two reports (ms). */
export const HEALTH_REPORT_MIN_INTERVAL_MS = 1000;

export class HealthReporter {
  private timer: NodeJS.Timeout | null = null;
  /** What was last sent on the current stream (JSON), or null when nothing was. */
  private lastSent: string | null = null;
  private lastSentAt = -Infinity;
  private stopped = false;

  /**
   * `read` takes the current view; `send` delivers it and says whether it could (false: no stream,
   * or one that is backed up: it is tried again after the interval).
   */
  constructor(
    private readonly read: () => EndpointHealthReport,
    private readonly send: (report: EndpointHealthReport) => boolean,
    private readonly minIntervalMs = HEALTH_REPORT_MIN_INTERVAL_MS,
  ) {}

  /** Some endpoint's health changed (or the clusters did): a report follows within the interval. */
  changed(): void {
    if (this.stopped || this.timer !== null) return;
    const wait = Math.max(0, this.lastSentAt + this.minIntervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = null;
      this.flush();
    }, wait);
    this.timer.unref();
  }

  /** A new stream opened: the control plane holds nothing of this proxy yet, so the view goes now. */
  connected(): void {
    this.lastSent = null;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.flush();
  }

  /** Sends the view if it differs from the last one sent; returns whether a report went. */
  flush(): boolean {
    if (this.stopped) return false;
    const report = this.read();
    const json = JSON.stringify(report);
    if (json === this.lastSent) return false;
    if (report.clusters.length === 0 && this.lastSent === null) return false;
    if (!this.send(report)) {
      this.lastSentAt = Date.now();
      this.changed();
      return false;
    }
    this.lastSent = json;
    this.lastSentAt = Date.now();
    return true;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }
}
