/** A size or rectangle that cannot be: the sentence says which and why (callers show it as it is). */
export class GeometryError extends Error {
  readonly code = "invalid_argument";
  constructor(message: string) {
    super(message);
    this.name = "GeometryError";
  }
}
