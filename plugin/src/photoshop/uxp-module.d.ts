/** The part of UXP's own module that the panel uses (Adobe publishes no npm types for it). */
declare module "uxp" {
  interface UxpEntry {
    readonly name: string;
    readonly isFile: boolean;
    readonly isFolder: boolean;
  }
  interface UxpFile extends UxpEntry {
    read(options?: { format?: symbol }): Promise<string | ArrayBuffer>;
    write(data: string, options?: { format?: symbol; append?: boolean }): Promise<number | void>;
  }
  interface UxpFolder extends UxpEntry {
    /** Throws when there is no such entry. */
    getEntry(path: string): Promise<UxpFile | UxpFolder>;
    createFile(name: string, options?: { overwrite?: boolean }): Promise<UxpFile>;
    renameEntry(entry: UxpEntry, newName: string, options?: { overwrite?: boolean }): Promise<void>;
  }
  export const storage: {
    secureStorage: {
      getItem(key: string): Promise<Uint8Array | string | null | undefined>;
      setItem(key: string, value: string | Uint8Array): Promise<void>;
      removeItem(key: string): Promise<void>;
    };
    localFileSystem: {
      /** The plugin's own folder for its data: no permission or dialog needed, kept across updates. */
      getDataFolder(): Promise<UxpFolder>;
    };
    formats: { utf8: symbol; binary: symbol };
  };
}
