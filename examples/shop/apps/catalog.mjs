// catalog: the product list, and one product joined with its reviews from the reviews service.
//   GET /products      → [{ id, name, price }, …]
//   GET /products/:id  → { id, name, price, reviews: <the reviews service's answer> }
//
// Env: PORT (required), HTTP_PROXY / http_proxy (optional).
import { getJson } from './lib/http-client.mjs';
import { notFound, serve } from './lib/service.mjs';

const SERVICE = 'catalog';

const PRODUCTS = [
  { id: 1, name: 'Table loom', price: 249.0 },
  { id: 2, name: 'Boat shuttle', price: 34.5 },
  { id: 3, name: 'Cotton warp yarn', price: 12.9 },
  { id: 4, name: 'Reed hook', price: 6.75 },
  { id: 5, name: 'Tapestry beater', price: 19.0 },
];

serve(SERVICE, [
  { method: 'GET', path: /^\/products\/?$/, handle: () => ({ body: PRODUCTS }) },
  {
    method: 'GET',
    path: /^\/products\/([^/]+)$/,
    async handle({ params: [raw], headers }) {
      const product = PRODUCTS.find((p) => String(p.id) === raw);
      if (!product) return notFound(SERVICE, `no product ${raw}`);
      // Pass the reviews answer through whole, so its version (v1/v2) shows at the edge.
      const reviews = await getJson(`http://reviews/reviews/${product.id}`, { headers });
      return { body: { ...product, reviews } };
    },
  },
]);
