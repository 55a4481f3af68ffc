// ratings: the leaf of the shop. GET /ratings/:id → { id, stars, count } for products 1..5.
//
// Env: PORT (required).
import { notFound, serve } from './lib/service.mjs';

const SERVICE = 'ratings';

// Derived from the id rather than random, so every replica and every restart gives the same answer
// and a response that changes under the mesh points at routing, not at this service.
function ratingFor(id) {
  return { stars: ((id * 3) % 5) + 1, count: 10 + id * 17 };
}

serve(SERVICE, [
  {
    method: 'GET',
    path: /^\/ratings\/([^/]+)$/,
    handle({ params: [raw] }) {
      if (!/^[1-5]$/.test(raw)) return notFound(SERVICE, `no ratings for product ${raw}`);
      const id = Number(raw);
      return { body: { id, ...ratingFor(id) } };
    },
  },
]);
