// reviews: GET /reviews/:id → two reviews of a product plus its rating from the ratings service.
//
// Env: PORT (required), VERSION (v1 | v2, default v1), HTTP_PROXY / http_proxy (optional).
// Run both versions side by side to give the mesh something to split traffic between: v2 also shows
// the rating as stars, and every response says which version answered in x-reviews-version.
import { getJson } from './lib/http-client.mjs';
import { notFound, serve } from './lib/service.mjs';

const SERVICE = 'reviews';
const VERSION = process.env.VERSION || 'v1';
if (VERSION !== 'v1' && VERSION !== 'v2') {
  console.error(`reviews: env VERSION must be v1 or v2, got "${VERSION}"`);
  process.exit(1);
}

const REVIEWS = [
  { author: 'Ada', text: 'Sturdy, well made, and it arrived a day early.' },
  { author: 'Grace', text: 'Does exactly what it says. Would buy again.' },
];

serve(
  SERVICE,
  [
    {
      method: 'GET',
      path: /^\/reviews\/([^/]+)$/,
      async handle({ params: [raw], headers }) {
        // The shop sells products 1..5; don't bother ratings about anything else.
        if (!/^[1-5]$/.test(raw)) return notFound(SERVICE, `no reviews for product ${raw}`);
        const { stars, count } = await getJson(`http://ratings/ratings/${raw}`, { headers });
        const body = { id: Number(raw), version: VERSION, reviews: REVIEWS, rating: { stars, count } };
        if (VERSION === 'v2') {
          const filled = Math.max(0, Math.min(5, Math.round(Number(stars) || 0))); // never let odd data throw
          body.stars = '★'.repeat(filled) + '☆'.repeat(5 - filled);
        }
        return { body };
      },
    },
  ],
  { headers: { 'x-reviews-version': VERSION } },
);
