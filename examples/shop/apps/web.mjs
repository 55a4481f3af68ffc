// web: the shop's front door.
//   GET /             → { products: [...] }           (web → catalog)
//   GET /product/:id  → the product with its reviews  (web → catalog → reviews → ratings)
//
// Env: PORT (required), HTTP_PROXY / http_proxy (optional).
import { getJson } from './lib/http-client.mjs';
import { serve } from './lib/service.mjs';

serve('web', [
  {
    method: 'GET',
    path: /^\/$/,
    async handle({ headers }) {
      return { body: { products: await getJson('http://catalog/products', { headers }) } };
    },
  },
  {
    method: 'GET',
    path: /^\/product\/([^/]+)$/,
    async handle({ params: [id], headers }) {
      // web does not know which products exist; catalog decides (and an unknown id comes back as a 502).
      return { body: await getJson(`http://catalog/products/${encodeURIComponent(id)}`, { headers }) };
    },
  },
]);
