// Tensors to and from the JSON the host speaks (base64 of little-endian bytes), in Node and in a page.

const BYTES = typeof Buffer !== 'undefined'
    ? { decode: (text) => new Uint8Array(Buffer.from(text, 'base64')), encode: (bytes) => Buffer.from(bytes).toString('base64') }
    : {
        decode: (text) => Uint8Array.from(atob(text), (c) => c.charCodeAt(0)),
        encode: (bytes) => {
            let text = '';
            for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
            return btoa(text);
        },
    };

const ARRAYS = { int64: BigInt64Array, int32: Int32Array, float32: Float32Array, bool: Uint8Array };

export function toTensor(Tensor, { dtype, dims, data }) {
    const Array_ = ARRAYS[dtype];
    if (!Array_) throw new Error(`inputs of type ${dtype} are not supported by this harness`);
    const bytes = BYTES.decode(data); // copied: typed arrays need an aligned buffer of their own
    return new Tensor(dtype, new Array_(bytes.slice().buffer), dims);
}

export function fromTensor(tensor) {
    const data = tensor.data instanceof Float32Array ? tensor.data : Float32Array.from(tensor.data, Number);
    return { dtype: 'float32', dims: tensor.dims, data: BYTES.encode(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)) };
}
