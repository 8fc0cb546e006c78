/** daemon/imaging: pixel math on plain buffers for masked editing. */
export * from "./types";
export * from "./image";
export * from "./mask";
export * from "./context";
export * from "./prefill";
export * from "./composite";
export * from "./outpaint";
export * from "./metrics";
