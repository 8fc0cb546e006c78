import pkg from "../package.json";

/** The package version, baked into the bundle at build time. */
export const DAEMON_VERSION: string = pkg.version;
