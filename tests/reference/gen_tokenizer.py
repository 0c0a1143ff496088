"""Golden vectors for tests/tokenizer: tests/data/tokenizer/*.

smollm2.json: the default model's vocabulary (read from its GGUF with the `gguf`
package) rebuilt as an HF `tokenizers` Tokenizer the way SmolLM2's tokenizer.json
describes it (BPE; Sequence[Digits(individual_digits=True), ByteLevel(add_prefix_space=
False)]; ByteLevel decoder; the control tokens as special added tokens), plus
llama.cpp's tokenization of the same texts (llama-cpp-python, vocab_only). Also HF
pre-tokenizer splits for gpt2/smollm/llama3/qwen2 and encodings of the SmolLM2
vocabulary under the Llama 3 and Qwen2 splits (no such vocabularies offline).

spm_tiny.gguf + spm_tiny.json: a small SentencePiece-style ("llama") vocabulary
trained here by score-ordered BPE on a few sentences, with byte tokens, and
llama.cpp's tokenization and detokenization of it.
"""
import collections
import json
import os
import sys

import gguf
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")
OUT = os.path.join(ROOT, "tests", "data", "tokenizer")

try:
    import llama_cpp
except ImportError:  # shipped without llama.cpp vectors; the test skips those
    llama_cpp = None

TEXTS = [
    ("empty", ""),
    ("hello", "Hello world"),
    ("sentence", "Hello, world! How are you doing today?"),
    ("leading_space", " leading space"),
    ("two_leading_spaces", "  two leading"),
    ("trailing_space", "trailing space "),
    ("trailing_spaces", "trailing spaces   "),
    ("only_spaces", "   "),
    ("tabs", "tabs\tand\t\tdouble tabs\t"),
    ("newlines", "new\nlines\n\nand\n\n\nmore\n"),
    ("only_newlines", "\n\n\n"),
    ("mixed_ws", "mixed \t \n \r\n whitespace  \n\t end"),
    ("crlf", "line one\r\nline two  \r\n  indented\r\n"),
    ("space_newline_space", "a \n\n b"),
    ("digits", "1234567890"),
    ("long_number", "The year 2024 had 366 days; pi is 3.14159265358979323846."),
    ("version", "version v1.2.3-beta+45 and x86_64"),
    ("phone", "phone: +1 (555) 010-9999, 1,000,000.00"),
    ("contractions", "I'm sure you'll see they've done it, isn't it? I'd've"),
    ("contractions_upper", "I'D SAY HE'S HERE AND WE'LL GO. It'S"),
    ("quotes", "'quoted' \"double\" `back` 'tis"),
    ("accents", "Café déjà vu, naïve façade, Ångström, São Paulo, Zürich"),
    ("combining", "e\u0301 a\u0300 n\u0303 decomposed"),
    ("greek_cyrillic", "Ελληνικά και русский язык"),
    ("rtl", "العربية עברית"),
    ("indic", "हिन्दी और தமிழ்"),
    ("thai", "ภาษาไทย"),
    ("chinese", "你好，世界！这是一个测试。"),
    ("japanese", "日本語のテキスト、カタカナとひらがな"),
    ("korean", "한국어 텍스트"),
    ("emoji", "I love 🍕 and 🎉!"),
    ("emoji_skin_tone", "👍🏽 thumbs up"),
    ("emoji_zwj_family", "family: 👨‍👩‍👧‍👦 done"),
    ("emoji_flags", "flags 🇫🇷🇯🇵🇺🇸"),
    ("emoji_zwj_heart", "❤️‍🔥 and 🏳️‍🌈"),
    ("emoji_only", "😀😃😄😁"),
    ("nbsp", "non\u00a0breaking\u00a0space"),
    ("zero_width", "zero\u200bwidth\u200djoiner"),
    ("ideographic_space", "ideographic\u3000space"),
    ("unicode_spaces", "em\u2003space thin\u2009space \u2028line sep"),
    ("punctuation", "em dash — and ellipsis… «guillemets» ¿qué? ¡sí!"),
    ("math", "math: ∑ x² ≤ ∞, α+β=γ"),
    ("numerals", "Ⅻ roman ½ fraction ²³ superscript ٣ arabic-indic ३ devanagari"),
    ("control_chars", "bell\x07 nul\x00 escape\x1b[0m"),
    ("python_code", "def add(a, b):\n    \"\"\"Adds.\"\"\"\n    return a + b  # sum\n\n\nprint(add(1, 22))\n"),
    ("cpp_code", "int main() {\n\tstd::vector<int> v{1, 2, 3};\n\tfor (auto& x : v) x *= 2;\n\treturn 0;\n}\n"),
    ("json", "{\"key\": [1, 2.5, null, true], \"nested\": {\"a\": \"b\"}}"),
    ("html", "<div class=\"x\"><p>Hi &amp; bye</p></div>"),
    ("url", "https://example.com/path?q=1&r=two#frag"),
    ("repeated_chars", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa!!!!!!!!!!??????"),
    ("chat", "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n"),
    ("chat_system", "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n"),
    ("special_inline", "text<|endoftext|>more text"),
    ("special_adjacent", "<|im_start|><|im_end|><|im_start|>"),
    ("special_near_miss", "< |im_start|> <|im_start| |im_end|>"),
    ("special_other", "<repo_name>ingot<file_sep>main.cc<filename>a.py"),
    ("special_spaces", " <|im_start|> user <|im_end|> "),
    ("paragraph",
     "The quick brown fox jumps over the lazy dog. Tokenizers split text into "
     "pieces; byte-level BPE never needs an unknown token, because every byte has "
     "its own symbol.\n\nIn 1999, 42 people paid $3.50 each (total: $147.00)."),
]

GPT2_REGEX = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
LLAMA3_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"""
                r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")
QWEN2_REGEX = (r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|"""
               r""" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+""")


def field_strings(reader, key):
    f = reader.fields[key]
    return [bytes(f.parts[i]).decode("utf-8") for i in f.data]


def field_ints(reader, key):
    f = reader.fields[key]
    return [int(f.parts[i][0]) for i in f.data]


def byte_decoder():
    """GPT-2's unicode -> byte map (bytes_to_unicode inverted)."""
    bs = list(range(0x21, 0x7F)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


BYTE_DECODER = byte_decoder()


def unmap(piece):
    return bytes(BYTE_DECODER[c] for c in piece).decode("utf-8")


def build_hf(tokens, merges, special, pre_tokenizer, ignore_merges=False):
    vocab = {t: i for i, t in enumerate(tokens)}
    assert len(vocab) == len(tokens), "duplicate token texts"
    pairs = [tuple(m.split(" ", 1)) for m in merges]
    tk = Tokenizer(models.BPE(vocab=vocab, merges=pairs, ignore_merges=ignore_merges))
    tk.pre_tokenizer = pre_tokenizer
    tk.decoder = decoders.ByteLevel()
    tk.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in special])
    return tk


def hf_ids(tk, text, parse_special=True):
    tk.encode_special_tokens = not parse_special
    ids = tk.encode(text, add_special_tokens=False).ids
    tk.encode_special_tokens = False
    return ids


def smollm2():
    reader = gguf.GGUFReader(MODEL)
    tokens = field_strings(reader, "tokenizer.ggml.tokens")
    types = field_ints(reader, "tokenizer.ggml.token_type")
    merges = field_strings(reader, "tokenizer.ggml.merges")
    special = [t for t, ty in zip(tokens, types) if ty == 3]

    def byte_level_after(split):
        return pre_tokenizers.Sequence(
            [split, pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])

    smollm_pre = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    hf = build_hf(tokens, merges, special, smollm_pre)
    hf_llama3 = build_hf(tokens, merges, special, byte_level_after(
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated")), ignore_merges=True)
    hf_qwen2 = build_hf(tokens, merges, special, byte_level_after(
        pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated")))
    splitters = {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        "smollm": smollm_pre,
        "llama3": byte_level_after(pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated")),
        "qwen2": byte_level_after(pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated")),
    }

    llama = None
    if llama_cpp is not None:
        llama = llama_cpp.Llama(model_path=MODEL, vocab_only=True, verbose=False)

    cases = []
    agree = 0
    for name, text in TEXTS:
        case = {"name": name, "text": text,
                "hf": hf_ids(hf, text), "hf_plain": hf_ids(hf, text, parse_special=False),
                "hf_llama3": hf_ids(hf_llama3, text), "hf_qwen2": hf_ids(hf_qwen2, text),
                "hf_decoded": hf.decode(hf_ids(hf, text), skip_special_tokens=False),
                "splits": {k: [unmap(p) for p, _ in s.pre_tokenize_str(text)]
                           for k, s in splitters.items()}}
        if llama is not None:
            data = text.encode("utf-8")
            case["llama_cpp"] = llama.tokenize(data, add_bos=False, special=True)
            case["llama_cpp_plain"] = llama.tokenize(data, add_bos=False, special=False)
            if case["llama_cpp"] == case["hf"]:
                agree += 1
            else:
                print(f"  smollm2: HF and llama.cpp differ on '{name}'", file=sys.stderr)
        cases.append(case)
    print(f"smollm2: {len(cases)} texts, llama.cpp agrees with HF on {agree}", file=sys.stderr)
    return {"model": os.path.basename(MODEL),
            "llama_cpp_version": llama_cpp.__version__ if llama_cpp else None,
            "tokenizers_version": __import__("tokenizers").__version__,
            "cases": cases}


# --- SentencePiece-style vocabulary -------------------------------------------------

SPM_CORPUS = (
    "the quick brown fox jumps over the lazy dog. hello world, hello there! "
    "the theory of the thing is that they think the other three are there. "
    "tokenizers turn text into tokens; tokens turn back into text. "
    "café au lait. naïve. über. 42 is the answer and 1999 was the year.")
SPM_USER_DEFINED = ["<tool>", "<tool_call>"]
SPM_CONTROL = ["<|end|>"]
SPM_TEXTS = [
    ("empty", ""),
    ("hello", "hello world"),
    ("the", "the theory of the thing"),
    ("leading_spaces", "  two leading spaces"),
    ("trailing", "trailing spaces   "),
    ("inner_spaces", "a  b   c"),
    ("newline", "hello\nworld\n"),
    ("upper", "Hello World THE END"),
    ("accents", "café naïve über"),
    ("byte_fallback_cjk", "hi 你好 there"),
    ("byte_fallback_emoji", "fox 🦊 and 👨‍👩‍👧"),
    ("digits", "42 and 1999 or 31337"),
    ("user_defined", "call <tool> then<tool_call>done"),
    ("control", "the end<|end|>hello<|end|>"),
    ("control_spaces", " <|end|> the"),
    ("unseen_letters", "xyzzy jq"),
]


def train_spm_vocab():
    """Score-ordered BPE pieces: each merge of the most frequent pair becomes a piece
    scored -merge_index, characters score below every merge (SentencePiece's scheme)."""
    words = collections.Counter("\u2581" + w for w in SPM_CORPUS.split(" "))
    segs = {w: list(w) for w in words}
    chars = sorted({c for w in words for c in w})
    pieces = []
    for step in range(160):
        pairs = collections.Counter()
        for w, n in words.items():
            s = segs[w]
            for a, b in zip(s, s[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        (a, b), count = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))
        if count < 2:
            break
        pieces.append(a + b)
        for w in words:
            s, out, i = segs[w], [], 0
            while i < len(s):
                if i + 1 < len(s) and s[i] == a and s[i + 1] == b:
                    out.append(a + b)
                    i += 2
                else:
                    out.append(s[i])
                    i += 1
            segs[w] = out
    tokens, scores, types = ["<unk>", "<s>", "</s>"], [0.0, 0.0, 0.0], [2, 3, 3]
    for b in range(256):
        tokens.append(f"<0x{b:02X}>")
        scores.append(0.0)
        types.append(6)
    for t in SPM_CONTROL:
        tokens.append(t); scores.append(0.0); types.append(3)
    for t in SPM_USER_DEFINED:
        tokens.append(t); scores.append(0.0); types.append(4)
    for i, p in enumerate(pieces):
        if p not in tokens:
            tokens.append(p); scores.append(-float(i)); types.append(1)
    for i, c in enumerate(chars):
        if c not in tokens:
            tokens.append(c); scores.append(-1000.0 - i); types.append(1)
    return tokens, scores, types


def spm_tiny():
    tokens, scores, types = train_spm_vocab()
    path = os.path.join(OUT, "spm_tiny.gguf")
    w = gguf.GGUFWriter(path, "llama")
    # llama.cpp reads the hyperparameters even with vocab_only.
    w.add_context_length(64)
    w.add_embedding_length(8)
    w.add_block_count(1)
    w.add_feed_forward_length(16)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    cases = []
    llama = None
    if llama_cpp is not None:
        llama = llama_cpp.Llama(model_path=path, vocab_only=True, verbose=False)
    for name, text in SPM_TEXTS:
        case = {"name": name, "text": text}
        if llama is not None:
            data = text.encode("utf-8")
            ids = llama.tokenize(data, add_bos=True, special=True)
            case["llama_cpp"] = ids
            case["llama_cpp_plain"] = llama.tokenize(data, add_bos=False, special=False)
            case["llama_cpp_detokenized"] = llama.detokenize(ids[1:]).decode("utf-8", "replace")
        cases.append(case)
    print(f"spm_tiny: {len(tokens)} tokens, {len(cases)} texts", file=sys.stderr)
    return {"llama_cpp_version": llama_cpp.__version__ if llama_cpp else None,
            "cases": cases}


def main():
    os.makedirs(OUT, exist_ok=True)
    for name, data in [("smollm2.json", smollm2()), ("spm_tiny.json", spm_tiny())]:
        with open(os.path.join(OUT, name), "w", encoding="utf-8") as f:
            json.dump(data, f, ensure_ascii=False, indent=1)
            f.write("\n")


if __name__ == "__main__":
    main()
