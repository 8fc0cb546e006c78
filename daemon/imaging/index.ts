/** daemon/imaging: pixel math on plain buffers for masked editing. */
export * from "./errors";
export * from "./image";
export * from "./mask";
export * from "./resample";
export * from "./prefill";
export * from "./composite";
export * from "./outpaint";
export * from "./metrics";
