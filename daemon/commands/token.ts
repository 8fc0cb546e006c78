import { loadOrCreateToken } from "../server/token";

/** Prints the pairing token that the panel asks for once. */
export async function token(): Promise<void> {
  console.log(await loadOrCreateToken());
}
