// The package under Node (the "node" export condition): the same API as in the
// browser, with the WebAssembly module already initialised from the file next to
// this one (wasm-bindgen's `init()` would `fetch` it, and Node's fetch does not read
// files). Calling the default export `init()` again is harmless: it returns the
// initialised module. Requests go through Node's built-in `fetch` (Node >= 20).
import { readFile } from "node:fs/promises";
import init from "./pkg/countersign.js";

await init({ module_or_path: await readFile(new URL("./pkg/countersign_bg.wasm", import.meta.url)) });

export * from "./pkg/countersign.js";
export default init;
