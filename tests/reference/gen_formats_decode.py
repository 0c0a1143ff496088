"""Plain numpy decoders of the quantized layouts, written from tests/data/formats/README.md
(not from the tools): each returns the dense weight [out_features, in_features] as
float32. check() compares them with the tool's own dequantization (a linear module probed
with the identity matrix, or the tool's dequantize function), so a README statement that
disagrees with the tool fails the generator instead of reaching the C++ loaders.
"""
import numpy as np

LINEARS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
           "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]


def f32(t):
    """A torch tensor (any float dtype, bf16 included) as a float32 numpy array."""
    return t.float().numpy() if t.dtype.is_floating_point else t.numpy()


def u32(a):
    return np.asarray(a).astype(np.int64) & 0xFFFFFFFF


# ---------------------------------------------------------------- bitsandbytes
def bnb_4bit(sd, p, qs):
    """qs: the JSON in <p>.weight.quant_state.bitsandbytes__<nf4|fp4>."""
    packed = sd[p + ".weight"].numpy().reshape(-1)
    codes = np.empty(packed.size * 2, np.int64)
    codes[0::2] = packed >> 4          # first element of a pair: high nibble
    codes[1::2] = packed & 0xF
    out, inp = qs["shape"]
    codes = codes[:out * inp]
    qmap = f32(sd[p + ".weight.quant_map"])
    if "nested_blocksize" in qs:
        nested = sd[p + ".weight.absmax"].numpy().astype(np.int64)
        nmap = f32(sd[p + ".weight.nested_quant_map"])
        nabs = f32(sd[p + ".weight.nested_absmax"])
        blk = np.arange(nested.size) // qs["nested_blocksize"]
        absmax = nmap[nested] * nabs[blk] + np.float32(qs["nested_offset"])
    else:
        absmax = f32(sd[p + ".weight.absmax"])
    blk = np.arange(codes.size) // qs["blocksize"]
    return (qmap[codes] * absmax[blk]).reshape(out, inp)


def bnb_int8(sd, p):
    q = sd[p + ".weight"].numpy().astype(np.float32)
    return q * (f32(sd[p + ".SCB"])[:, None] / 127.0)


# ---------------------------------------------------------------- HQQ
def hqq_unpack(w_q, nbits):
    w_q = np.asarray(w_q).astype(np.int64)
    per = 8 // nbits               # 4bit_u8 / 2bit_u8: `per` row blocks share a byte
    mask = (1 << nbits) - 1
    return np.concatenate([(w_q >> (8 - nbits * (i + 1))) & mask for i in range(per)], axis=0)


def hqq(w_q, scale, zero, nbits, group_size, shape, axis=1):
    """axis=1: the weight is cut row-major into rows of group_size; scale/zero [G, 1] per
    row. axis=0: the row-major weight is reshaped to [group_size, G]; group k is column k
    (elements k, k + G, k + 2G, ... of the flattened weight); scale/zero [1, G]."""
    q = hqq_unpack(w_q, nbits).astype(np.float32)
    n = shape[0] * shape[1] // group_size
    assert q.shape == ((n, group_size) if axis == 1 else (group_size, n)), q.shape
    return ((q - zero) * scale).reshape(shape)


# ---------------------------------------------------------------- GPTQ / AWQ
def gptq_unpack_rows(words, bits):
    """int32 [n_words, cols] -> codes [n_words * 32 / bits, cols], LSB first."""
    w = u32(words)
    if bits in (2, 4, 8):
        per = 32 // bits
        return np.stack([(w >> (bits * j)) & ((1 << bits) - 1) for j in range(per)],
                        axis=1).reshape(-1, w.shape[1])
    assert bits == 3
    out = []
    for r in range(0, w.shape[0], 3):
        a, b, c = w[r], w[r + 1], w[r + 2]
        vals = [(a >> (3 * j)) & 7 for j in range(10)]
        vals.append(((a >> 30) & 3) | ((b & 1) << 2))
        vals += [(b >> (3 * j + 1)) & 7 for j in range(10)]
        vals.append(((b >> 31) & 1) | ((c & 3) << 1))
        vals += [(c >> (3 * j + 2)) & 7 for j in range(10)]
        out.append(np.stack(vals))
    return np.concatenate(out, axis=0)


def gptq(sd, p, bits):
    q = gptq_unpack_rows(sd[p + ".qweight"].numpy(), bits)            # [in, out]
    z = gptq_unpack_rows(sd[p + ".qzeros"].numpy().T, bits).T + 1    # [groups, out]
    s = f32(sd[p + ".scales"])                                       # [groups, out]
    g = sd[p + ".g_idx"].numpy().astype(np.int64)                    # [in]
    return (s[g] * (q - z[g])).T


AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]  # nibble i holds column 8*word + AWQ_ORDER[i]


def awq_unpack(words):
    w = u32(words)
    out = np.empty((w.shape[0], w.shape[1] * 8), np.int64)
    for i, col in enumerate(AWQ_ORDER):
        out[:, col::8] = (w >> (4 * i)) & 0xF
    return out


def awq(sd, p, group):
    q = awq_unpack(sd[p + ".qweight"].numpy())                       # [in, out]
    z = awq_unpack(sd[p + ".qzeros"].numpy())                        # [in/group, out]
    s = f32(sd[p + ".scales"])                                       # [in/group, out]
    g = np.arange(q.shape[0]) // group
    return ((q - z[g]) * s[g]).T


# ---------------------------------------------------------------- MLX
def mlx(sd, p, bits, group):
    w = u32(sd[p + ".weight"].numpy())                               # [out, in*bits/32]
    per = 32 // bits
    q = np.stack([(w >> (bits * j)) & ((1 << bits) - 1) for j in range(per)], axis=2)
    q = q.reshape(w.shape[0], -1).astype(np.float32)                 # [out, in]
    g = np.arange(q.shape[1]) // group
    return q * f32(sd[p + ".scales"])[:, g] + f32(sd[p + ".biases"])[:, g]


# ---------------------------------------------------------------- optimum-quanto
def quanto(sd, p, qtype, shape):
    if qtype == "qint8":
        return sd[p + ".weight._data"].numpy().astype(np.float32) * f32(sd[p + ".weight._scale"])
    packed = sd[p + ".weight._data._data"].numpy().astype(np.int64)  # [ceil(out/2), in]
    q = np.concatenate([packed & 0xF, packed >> 4], axis=0)[:shape[0]].astype(np.float32)
    return q * f32(sd[p + ".weight._scale"]) - f32(sd[p + ".weight._shift"])


# ---------------------------------------------------------------- GGUF
def gguf_unpermute(w, n_head):
    """Inverse of convert_hf_to_gguf's LlamaModel.permute for a Q or K weight [rows, in]."""
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_q8_0(raw, rows, cols):
    """Q8_0 blocks of 32 along each row: f16 d, then 32 int8; w = d * q."""
    blocks = np.frombuffer(bytes(raw), dtype=np.uint8).reshape(rows * cols // 32, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(rows, cols)


# ---------------------------------------------------------------- comparison
def probe(module, in_features, dtype):
    """The dense weight [out, in] a linear module applies: module(I) - module(0)."""
    import torch
    with torch.no_grad():
        eye = torch.eye(in_features, dtype=dtype)
        y = module(eye) - module(torch.zeros(1, in_features, dtype=dtype))
    return y.float().numpy().T


def compare(name, decoded, reference, rel=4e-3):
    decoded = np.asarray(decoded, np.float32)
    reference = np.asarray(reference, np.float32)
    assert decoded.shape == reference.shape, (name, decoded.shape, reference.shape)
    err = float(np.abs(decoded - reference).max())
    scale = float(np.abs(reference).max())
    assert err <= rel * scale, f"{name}: README decoding differs from the tool: {err} vs {scale}"
    return err / scale
