#!/usr/bin/env node
import { main } from '../dist/src/cli/main.js';

const code = await main(process.argv.slice(2));
process.exitCode = code;
// Exit even if a stray handle lingers after shutdown; an empty event loop exits sooner by itself.
setTimeout(() => process.exit(code), 1000).unref();
