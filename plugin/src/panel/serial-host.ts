/**
 * Queued generations share one Photoshop: reads, writes and variation choices that use a modal
 * scope must not overlap (Photoshop refuses a second one: "host is in a modal state"), so the
 * panel hands its operations a host that runs those calls one at a time, in the order asked.
 */
import type { DocumentHost } from "../photoshop/host";

export function serialHost(host: DocumentHost): DocumentHost {
  let tail: Promise<unknown> = Promise.resolve();
  const inTurn = <A extends unknown[], R>(call: (...args: A) => Promise<R>) => (...args: A): Promise<R> => {
    const turn = tail.then(() => call(...args));
    tail = turn.catch(() => undefined);
    return turn;
  };
  return {
    activeDocument: inTurn(host.activeDocument.bind(host)),
    documentInfo: inTurn(host.documentInfo.bind(host)),
    listLayers: inTurn(host.listLayers.bind(host)),
    readPixels: inTurn(host.readPixels.bind(host)),
    readSelection: inTurn(host.readSelection.bind(host)),
    applyEdit: inTurn(host.applyEdit.bind(host)),
    showOnly: inTurn(host.showOnly.bind(host)),
    // Encoding a thumbnail changes nothing and takes no modal scope: previews need not wait.
    encodeThumbnail: host.encodeThumbnail.bind(host),
  };
}
