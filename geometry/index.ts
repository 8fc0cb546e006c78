export * from "./types";
export * from "./errors";
export * from "./limits";
export * from "./region";
export * from "./sizing";
export * from "./context";
