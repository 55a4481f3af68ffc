/**
 * Live taps (`GET /api/v1/tap`, `weft tap`, `weft top`). Opening a tap tells the proxies that serve or
 * call the tapped service — and only those — to send the requests that match it; closing the last
 * tap of a proxy tells it to stop, so a proxy with no tap open does no tap work at all. Proxies get
 * the whole list of their open taps each time it changes (a `tap` message on the config stream), so
 * a message lost with a dropped stream is repaired by the next connect. The set of proxies is
 * recomputed every RESYNC_MS while a tap is open (new replicas, new callers).
 */
import type { TapEvent, TapSpec } from '../../model/golden-signals.js';
import { metricsServiceName } from './stats-store.js';

/** Taps open at once, at most. */
export const MAX_TAPS = 32;
const RESYNC_MS = 2000;

/** A tap event as the API streams it: the proxy's event and which proxy saw it. */
export type ApiTapEvent = TapEvent & { proxy: string };

/** What the hub needs of the config server. */
export interface TapTargets {
  /** Connected proxies that serve or call `namespace/name`. */
  proxiesOf(namespace: string, name: string): string[];
  /** Sends a proxy its open taps; false when it is not connected. */
  sendTaps(proxyId: string, taps: TapSpec[]): boolean;
}

/** What a tap asks for. */
export interface TapRequest {
  /** `namespace/name`. */
  service: string;
  method: string | null;
  path: string | null;
  status: string | null;
}

interface Session {
  spec: TapSpec;
  namespace: string;
  name: string;
  emit: (e: ApiTapEvent) => void;
}

/** Counters for the control plane's metrics. */
export interface TapCounters {
  opened: number;
  /** Events received from proxies, and events delivered to taps. */
  received: number;
  delivered: number;
}

export class TapHub {
  private readonly sessions = new Map<string, Session>();
  /** What each proxy was last sent (JSON of its taps), so only changes are sent. */
  private readonly sent = new Map<string, string>();
  private timer: NodeJS.Timeout | null = null;
  private seq = 0;
  readonly counters: TapCounters = { opened: 0, received: 0, delivered: 0 };

  constructor(private readonly targets: TapTargets) {}

  /** Taps open now. */
  get open(): number {
    return this.sessions.size;
  }

  /** Opens a tap; `emit` gets each matching event until `close()` is called. Throws when MAX_TAPS are open. */
  start(req: TapRequest, emit: (e: ApiTapEvent) => void): { id: string; proxies: string[]; close(): void } {
    if (this.sessions.size >= MAX_TAPS) throw new Error(`${MAX_TAPS} taps are open already; close one first`);
    const slash = req.service.indexOf('/');
    const namespace = slash === -1 ? 'default' : req.service.slice(0, slash);
    const name = slash === -1 ? req.service : req.service.slice(slash + 1);
    const id = `tap-${Date.now().toString(36)}-${(++this.seq).toString(36)}`;
    const spec: TapSpec = { id, service: metricsServiceName(`${namespace}/${name}`), method: req.method, path: req.path, status: req.status };
    this.sessions.set(id, { spec, namespace, name, emit });
    this.counters.opened++;
    this.sync();
    if (this.timer === null) {
      this.timer = setInterval(() => this.sync(), RESYNC_MS);
      this.timer.unref();
    }
    return {
      id,
      proxies: this.targets.proxiesOf(namespace, name),
      close: () => {
        if (!this.sessions.delete(id)) return;
        this.sync();
        if (this.sessions.size === 0 && this.timer !== null) {
          clearInterval(this.timer);
          this.timer = null;
        }
      },
    };
  }

  /** Events a proxy sent: each goes to the taps it names that are still open. */
  events(proxyId: string, batch: Array<{ taps: string[]; event: TapEvent }>): void {
    for (const item of batch) {
      if (typeof item !== 'object' || item === null || !Array.isArray(item.taps) || typeof item.event !== 'object' || item.event === null) continue;
      this.counters.received++;
      for (const id of item.taps) {
        const s = this.sessions.get(id);
        if (s === undefined) continue;
        this.counters.delivered++;
        s.emit({ ...item.event, proxy: proxyId });
      }
    }
  }

  /** A proxy's stream opened: it holds no taps, so it is told again of those that concern it. */
  connected(proxyId: string): void {
    this.sent.delete(proxyId);
    if (this.sessions.size > 0) this.sync();
  }

  /** Tells every proxy concerned its open taps, where they changed; proxies no tap concerns any more get []. */
  private sync(): void {
    const want = new Map<string, TapSpec[]>();
    for (const s of this.sessions.values()) {
      for (const p of this.targets.proxiesOf(s.namespace, s.name)) {
        let list = want.get(p);
        if (list === undefined) want.set(p, (list = []));
        list.push(s.spec);
      }
    }
    for (const p of this.sent.keys()) if (!want.has(p)) want.set(p, []);
    for (const [p, taps] of want) {
      const text = JSON.stringify(taps);
      if (this.sent.get(p) === text) continue;
      if (!this.targets.sendTaps(p, taps)) {
        this.sent.delete(p);
        continue;
      }
      if (taps.length === 0) this.sent.delete(p);
      else this.sent.set(p, text);
    }
  }
}
