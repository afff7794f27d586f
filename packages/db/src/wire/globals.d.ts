// The two text-coding globals wire code uses: present in browsers, workers
// and Node alike, but declared by none of the ES libraries this project
// allows (which keeps DOM, worker and Node APIs out of wire/).
declare class TextEncoder {
  encode(input?: string): Uint8Array;
  encodeInto(source: string, destination: Uint8Array): { read: number; written: number };
}
declare class TextDecoder {
  constructor(label?: string, options?: { fatal?: boolean; ignoreBOM?: boolean });
  decode(input?: ArrayBufferView | ArrayBuffer, options?: { stream?: boolean }): string;
}
