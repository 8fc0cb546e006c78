/** The part of UXP's own module that the panel uses (Adobe publishes no npm types for it). */
declare module "uxp" {
  export const storage: {
    secureStorage: {
      getItem(key: string): Promise<Uint8Array | string | null | undefined>;
      setItem(key: string, value: string | Uint8Array): Promise<void>;
      removeItem(key: string): Promise<void>;
    };
  };
}
