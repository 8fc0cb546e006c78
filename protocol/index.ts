export * from "./version";
export * from "./messages";
export * from "./frames";
export * from "./parse";
