// The restricted pickle machine of the torch.save reader (see torch_pickle.h and
// torch_pickle_machine.h): opcodes, memo, marks, the allow-list of globals and the
// "calls" of the plain callables. It follows CPython's Lib/pickle.py _Unpickler opcode
// by opcode, but a global is only ever looked up in the allow-list below and "called"
// by code here. Everything is bounded by the input: each opcode consumes at least one
// byte and creates at most one node.
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "engine/common/status.h"
#include "engine/formats/torch_pickle_machine.h"

namespace ingot::formats {
namespace pickle_internal {
namespace {

struct GlobalRow {
  const char* name;
  Global kind;
};
constexpr GlobalRow kCallables[] = {
    {"collections.OrderedDict", Global::kOrderedDict},
    {"builtins.set", Global::kSet},
    {"builtins.frozenset", Global::kSet},
    {"__builtin__.set", Global::kSet},
    {"__builtin__.frozenset", Global::kSet},
    {"torch._utils._rebuild_tensor", Global::kRebuildTensor},
    {"torch._utils._rebuild_tensor_v2", Global::kRebuildTensorV2},
    {"torch._utils._rebuild_tensor_v3", Global::kRebuildTensorV3},
    {"torch._utils._rebuild_parameter", Global::kRebuildParameter},
    {"torch._utils._rebuild_parameter_with_state", Global::kRebuildParameterWithState},
    {"torch._tensor._rebuild_from_type_v2", Global::kRebuildFromTypeV2},
    {"torch.Size", Global::kSize},
    {"torch.device", Global::kDevice},
    {"_codecs.encode", Global::kCodecsEncode},
    {"torch.serialization._get_layout", Global::kGetLayout},
    {"torch.Tensor", Global::kValue},
    {"torch.nn.parameter.Parameter", Global::kValue},
    {"torch._utils._rebuild_wrapper_subclass", Global::kRebuildWrapperSubclass},
    // torchao 0.18's weights whose state is tensors and plain values only
    // (engine/formats/layouts/torchao.cc reads them): the CPU int4 one, the CUDA int4
    // one (qdata, scale_and_zero, block_size, act_pre_scale; its class sets __module__ to
    // torchao.quantization) and the weight-only int8 one (the dynamic int8 one also
    // pickles its activation settings as objects, and is refused by their names).
    {"torchao.prototype.quantization.int4.Int4OpaqueTensor", Global::kWrapperSubclass},
    {"torchao.quantization.Int4TilePackedTo4dTensor", Global::kWrapperSubclass},
    {"torchao.quantization.Int8Tensor", Global::kWrapperSubclass},
};

}  // namespace

std::optional<Global> ClassifyGlobal(std::string_view name) {
  for (const GlobalRow& r : kCallables) {
    if (name == r.name) return r.kind;
  }
  if (FindStorage(name) != nullptr) return Global::kStorage;
  if (FindTorchDType(name) != nullptr) return Global::kValue;
  return std::nullopt;
}

}  // namespace pickle_internal

namespace {

// UTF-8 -> latin-1 bytes (what _codecs.encode(s, 'latin1') does); false if a code
// point is above 255 or the UTF-8 is malformed.
bool Utf8ToLatin1(const std::string& in, std::string& out) {
  out.clear();
  for (size_t i = 0; i < in.size();) {
    const uint8_t c = static_cast<uint8_t>(in[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if ((c & 0xe0) == 0xc0 && i + 1 < in.size() &&
               (static_cast<uint8_t>(in[i + 1]) & 0xc0) == 0x80) {
      const uint32_t cp = (c & 0x1fu) << 6 | (static_cast<uint8_t>(in[i + 1]) & 0x3fu);
      if (cp > 0xff) return false;
      out.push_back(static_cast<char>(cp));
      i += 2;
    } else {
      return false;
    }
  }
  return true;
}

void AppendUtf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xc0 | cp >> 6));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xe0 | cp >> 12));
    out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  } else {
    out.push_back(static_cast<char>(0xf0 | (cp >> 18 & 0x07)));
    out.push_back(static_cast<char>(0x80 | (cp >> 12 & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp >> 6 & 0x3f)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3f)));
  }
}

}  // namespace

using pickle_internal::ClassifyGlobal;
using pickle_internal::Global;

absl::Status PickleMachine::PushGlobal(const std::string& module, const std::string& name) {
  const std::string full = absl::StrCat(module, ".", name);
  if (!ClassifyGlobal(full)) {
    return absl::InvalidArgumentError(absl::StrCat(
        ckpt_.path_, ": pickle references '", full,
        "'; only tensors and plain containers are allowed (torch.save of a state dict)"));
  }
  stack_.push_back(NewString(Kind::kGlobal, full));
  return absl::OkStatus();
}

// The operand of LONG (a decimal line), BININT (i32), BININT1 (u8), BININT2 (u16),
// LONG1 (u8 length) or LONG4 (i32 length) and the little-endian bytes.
absl::StatusOr<int64_t> PickleMachine::IntOperand(uint8_t op) {
  switch (op) {
    case 'L': {
      ASSIGN_OR_RETURN(std::string s, ReadLine());
      return ParseDecimal(s);
    }
    case 'J': return Read<int32_t>();
    case 'K': return Read<uint8_t>();
    case 'M': return Read<uint16_t>();
    case 0x8a: {
      ASSIGN_OR_RETURN(uint8_t n, Read<uint8_t>());
      return ReadLong(n);
    }
    default: {  // 0x8b
      ASSIGN_OR_RETURN(int32_t n, Read<int32_t>());
      if (n < 0) return Error("negative LONG4 length");
      return ReadLong(static_cast<uint64_t>(n));
    }
  }
}

// The memo index operand of PUT/GET (a decimal line), BINPUT/BINGET (u8) or
// LONG_BINPUT/LONG_BINGET (u32).
absl::StatusOr<uint64_t> PickleMachine::MemoIndex(uint8_t op) {
  if (op == 'p' || op == 'g') {
    ASSIGN_OR_RETURN(std::string s, ReadLine());
    ASSIGN_OR_RETURN(int64_t i, ParseDecimal(s));
    return static_cast<uint64_t>(i);
  }
  if (op == 'q' || op == 'h') {
    ASSIGN_OR_RETURN(uint8_t i, Read<uint8_t>());
    return i;
  }
  ASSIGN_OR_RETURN(uint32_t i, Read<uint32_t>());
  return i;
}

absl::Status PickleMachine::SetItems(PickleValue* dict, const std::vector<PickleValue*>& kv) {
  if (dict->kind_ != Kind::kDict) {
    return Error(absl::StrCat("SETITEM(S) on a ", PickleValue::KindName(dict->kind_)));
  }
  if (kv.size() % 2 != 0) return Error("SETITEMS with an odd number of items");
  for (size_t i = 0; i < kv.size(); i += 2) {
    // A repeated str/int key replaces the value in place, as a Python dict does
    // (found through dict_keys_, so a dict of n keys costs O(n), not O(n^2)).
    const PickleValue* k = kv[i];
    if (k->kind_ == Kind::kString || k->kind_ == Kind::kInt) {
      std::string id = k->kind_ == Kind::kString ? "s" + k->s_ : absl::StrCat("i", k->i_);
      auto [it, inserted] = dict_keys_.try_emplace({dict, std::move(id)}, dict->entries_.size());
      if (!inserted) {
        dict->entries_[it->second].second = kv[i + 1];
        continue;
      }
    }
    dict->entries_.emplace_back(k, kv[i + 1]);
  }
  return absl::OkStatus();
}

absl::Status PickleMachine::Append(PickleValue* list, const std::vector<PickleValue*>& items) {
  if (list->kind_ != Kind::kList) {
    return Error(absl::StrCat("APPEND(S) on a ", PickleValue::KindName(list->kind_)));
  }
  list->items_.insert(list->items_.end(), items.begin(), items.end());
  return absl::OkStatus();
}

absl::StatusOr<PickleValue*> PickleMachine::Call(PickleValue* callable, PickleValue* args) {
  if (callable->kind_ != Kind::kGlobal) {
    return Error(absl::StrCat("call of ", callable->DebugString(), ", not a global"));
  }
  if (args->kind_ != Kind::kTuple) {
    return Error(absl::StrCat("arguments of ", callable->s_, " are ", args->DebugString(),
                              ", not a tuple"));
  }
  const std::vector<const PickleValue*>& a = args->items_;
  const Global kind = *ClassifyGlobal(callable->s_);
  auto bad_args = [&]() {
    return Error(absl::StrCat(callable->s_, " called with ", args->DebugString()));
  };
  switch (kind) {
    case Global::kOrderedDict: {
      PickleValue* d = New(Kind::kDict);
      if (a.empty()) return d;
      // OrderedDict([(k, v), ...])
      if (a.size() != 1 || !a[0]->is_sequence()) return bad_args();
      std::vector<PickleValue*> kv;
      for (const PickleValue* pair : a[0]->items_) {
        if (!pair->is_sequence() || pair->items_.size() != 2) return bad_args();
        kv.push_back(const_cast<PickleValue*>(pair->items_[0]));
        kv.push_back(const_cast<PickleValue*>(pair->items_[1]));
      }
      RETURN_IF_ERROR(SetItems(d, kv));
      return d;
    }
    case Global::kSet: {
      PickleValue* l = New(Kind::kList);
      if (a.empty()) return l;
      if (a.size() != 1 || !a[0]->is_sequence()) return bad_args();
      l->items_ = a[0]->items_;
      return l;
    }
    case Global::kRebuildTensor:
    case Global::kRebuildTensorV2:
    case Global::kRebuildTensorV3:
      return RebuildTensor(kind, a);
    case Global::kRebuildParameter:
    case Global::kRebuildParameterWithState:
      if (a.size() < 3 || a[0]->kind_ != Kind::kTensor) return bad_args();
      return const_cast<PickleValue*>(a[0]);
    case Global::kRebuildFromTypeV2: {
      // An allowed wrapper subclass: its state dict stands for it (args only describe
      // the wrapper: class, dtype, size, stride, offset, layout, device).
      if (a.size() == 4 && a[0]->kind_ == Kind::kGlobal && a[1]->kind_ == Kind::kGlobal &&
          *ClassifyGlobal(a[1]->s_) == Global::kWrapperSubclass) {
        if (*ClassifyGlobal(a[0]->s_) != Global::kRebuildWrapperSubclass || a[3]->kind_ != Kind::kDict) {
          return bad_args();
        }
        return const_cast<PickleValue*>(a[3]);
      }
      // (func, type, args, state): func(*args), with func a tensor rebuild (not
      // this function again: no recursion) and type a tensor class.
      if (a.size() != 4 || a[0]->kind_ != Kind::kGlobal || a[1]->kind_ != Kind::kGlobal ||
          a[2]->kind_ != Kind::kTuple ||
          (a[1]->s_ != "torch.Tensor" && a[1]->s_ != "torch.nn.parameter.Parameter")) {
        return bad_args();
      }
      const Global func = *ClassifyGlobal(a[0]->s_);
      if (func != Global::kRebuildTensor && func != Global::kRebuildTensorV2 &&
          func != Global::kRebuildTensorV3 && func != Global::kRebuildParameter &&
          func != Global::kRebuildParameterWithState) {
        return bad_args();
      }
      ASSIGN_OR_RETURN(PickleValue* r, Call(const_cast<PickleValue*>(a[0]),
                                            const_cast<PickleValue*>(a[2])));
      if (r->kind_ != Kind::kTensor) return bad_args();
      return r;
    }
    case Global::kSize: {
      PickleValue* t = New(Kind::kTuple);
      if (a.empty()) return t;
      if (a.size() != 1 || !a[0]->is_sequence()) return bad_args();
      for (const PickleValue* d : a[0]->items_) {
        if (d->kind_ != Kind::kInt) return bad_args();
      }
      t->items_ = a[0]->items_;
      return t;
    }
    case Global::kDevice: {
      if (a.empty() || a.size() > 2 || a[0]->kind_ != Kind::kString) return bad_args();
      std::string dev = a[0]->s_;
      if (a.size() == 2 && a[1]->kind_ == Kind::kInt) absl::StrAppend(&dev, ":", a[1]->i_);
      return NewString(Kind::kString, std::move(dev));
    }
    case Global::kCodecsEncode: {
      if (a.size() != 2 || a[0]->kind_ != Kind::kString || a[1]->kind_ != Kind::kString ||
          (a[1]->s_ != "latin1" && a[1]->s_ != "latin-1")) {
        return bad_args();
      }
      std::string bytes;
      if (!Utf8ToLatin1(a[0]->s_, bytes)) return bad_args();
      return NewString(Kind::kBytes, std::move(bytes));
    }
    case Global::kGetLayout:  // _get_layout("torch.strided"): the name stands for it
      if (a.size() != 1 || a[0]->kind_ != Kind::kString) return bad_args();
      return const_cast<PickleValue*>(a[0]);
    case Global::kValue:
    case Global::kStorage:
    case Global::kRebuildWrapperSubclass:  // only ever _rebuild_from_type_v2's func
    case Global::kWrapperSubclass:
      break;
  }
  return Error(absl::StrCat(callable->s_, " is not callable here"));
}

absl::Status PickleMachine::Run() {
  while (true) {
    if (pos_ >= size_) return Error("pickle ends without a STOP opcode");
    op_at_ = pos_;
    const uint8_t op = data_[pos_++];
    switch (op) {
      case 0x80: {  // PROTO
        ASSIGN_OR_RETURN(uint8_t proto, Read<uint8_t>());
        if (proto > 5) return Error(absl::StrCat("pickle protocol ", proto, " is not supported"));
        break;
      }
      case 0x95: {  // FRAME: a length prefix only
        ASSIGN_OR_RETURN(uint64_t len, Read<uint64_t>());
        (void)len;
        break;
      }
      case '.': {  // STOP
        ASSIGN_OR_RETURN(PickleValue* root, Pop());
        ckpt_.root_ = root;
        return absl::OkStatus();
      }
      case '(': marks_.push_back(stack_.size()); break;
      case '0': {  // POP (or POP_MARK when the current segment is empty)
        if (stack_.size() > Floor()) {
          stack_.pop_back();
        } else {
          RETURN_IF_ERROR(PopMark().status());
        }
        break;
      }
      case '1': RETURN_IF_ERROR(PopMark().status()); break;
      case '2': {  // DUP
        ASSIGN_OR_RETURN(PickleValue* v, Top());
        stack_.push_back(v);
        break;
      }
      case 'N': stack_.push_back(New(Kind::kNone)); break;
      case 0x88: case 0x89: {  // NEWTRUE, NEWFALSE
        PickleValue* v = New(Kind::kBool);
        v->b_ = op == 0x88;
        stack_.push_back(v);
        break;
      }
      case 'I': {  // INT (text); "00"/"01" are False/True
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        if (s == "00" || s == "01") {
          PickleValue* v = New(Kind::kBool);
          v->b_ = s == "01";
          stack_.push_back(v);
        } else {
          ASSIGN_OR_RETURN(int64_t v, ParseDecimal(s));
          stack_.push_back(NewInt(v));
        }
        break;
      }
      case 'L': case 'J': case 'K': case 'M': case 0x8a: case 0x8b: {
        ASSIGN_OR_RETURN(int64_t v, IntOperand(op));
        stack_.push_back(NewInt(v));
        break;
      }
      case 'F': {  // FLOAT (text)
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        PickleValue* v = New(Kind::kFloat);
        if (!absl::SimpleAtod(s, &v->f_)) return Error(absl::StrCat("bad float '", s, "'"));
        stack_.push_back(v);
        break;
      }
      case 'G': {  // BINFLOAT: big-endian IEEE double
        ASSIGN_OR_RETURN(uint64_t be, Read<uint64_t>());
        const uint64_t bits = __builtin_bswap64(be);
        PickleValue* v = New(Kind::kFloat);
        std::memcpy(&v->f_, &bits, 8);
        stack_.push_back(v);
        break;
      }
      case 'X': case 0x8c: case 0x8d:    // BINUNICODE, SHORT_BINUNICODE, BINUNICODE8
      case 'B': case 'C': case 0x8e:     // BINBYTES, SHORT_BINBYTES, BINBYTES8
      case 'T': case 'U': case 0x96: {   // BINSTRING, SHORT_BINSTRING, BYTEARRAY8
        uint64_t n = 0;
        if (op == 0x8c || op == 'C' || op == 'U') {
          ASSIGN_OR_RETURN(uint8_t n8, Read<uint8_t>());
          n = n8;
        } else if (op == 0x8d || op == 0x8e || op == 0x96) {
          ASSIGN_OR_RETURN(n, Read<uint64_t>());
        } else {
          ASSIGN_OR_RETURN(uint32_t n32, Read<uint32_t>());
          n = n32;
        }
        ASSIGN_OR_RETURN(std::string s, ReadBytes(n));
        // Python 2 str (T, U) is unpickled as str by torch (encoding='utf-8').
        const bool text = op == 'X' || op == 0x8c || op == 0x8d || op == 'T' || op == 'U';
        stack_.push_back(NewString(text ? Kind::kString : Kind::kBytes, std::move(s)));
        break;
      }
      case 'S': {  // STRING (text, quoted repr): only the unescaped form
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        if (s.size() < 2 || (s[0] != '\'' && s[0] != '"') || s.back() != s[0] ||
            s.find('\\') != std::string::npos) {
          return Error("unsupported STRING operand (escapes are not supported)");
        }
        stack_.push_back(NewString(Kind::kString, s.substr(1, s.size() - 2)));
        break;
      }
      case 'V': {  // UNICODE (raw-unicode-escape)
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        std::string out;
        for (size_t i = 0; i < s.size(); ++i) {
          const uint8_t c = static_cast<uint8_t>(s[i]);
          if (c == '\\' && i + 1 < s.size() && (s[i + 1] == 'u' || s[i + 1] == 'U')) {
            const size_t digits = s[i + 1] == 'u' ? 4 : 8;
            uint32_t cp = 0;
            if (i + 2 + digits > s.size()) return Error("truncated \\u escape");
            for (size_t k = 0; k < digits; ++k) {
              const char h = s[i + 2 + k];
              const int d = h >= '0' && h <= '9'   ? h - '0'
                            : h >= 'a' && h <= 'f' ? h - 'a' + 10
                            : h >= 'A' && h <= 'F' ? h - 'A' + 10
                                                   : -1;
              if (d < 0) return Error("bad \\u escape");
              cp = cp << 4 | static_cast<uint32_t>(d);
            }
            if (cp > 0x10ffff) return Error("bad \\U escape");
            AppendUtf8(out, cp);
            i += 1 + digits;
          } else {
            AppendUtf8(out, c);
          }
        }
        stack_.push_back(NewString(Kind::kString, std::move(out)));
        break;
      }
      case ')': stack_.push_back(New(Kind::kTuple)); break;
      case ']': stack_.push_back(New(Kind::kList)); break;
      case '}': stack_.push_back(New(Kind::kDict)); break;
      case 0x8f: stack_.push_back(New(Kind::kList)); break;  // EMPTY_SET
      case 't': case 'l': case 0x91: {  // TUPLE, LIST, FROZENSET (from MARK)
        ASSIGN_OR_RETURN(std::vector<PickleValue*> items, PopMark());
        PickleValue* v = New(op == 't' ? Kind::kTuple : Kind::kList);
        v->items_.assign(items.begin(), items.end());
        stack_.push_back(v);
        break;
      }
      case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
        const size_t n = op - 0x84;
        if (stack_.size() < Floor() + n) return Error("stack underflow");
        PickleValue* v = New(Kind::kTuple);
        v->items_.assign(stack_.end() - n, stack_.end());
        stack_.resize(stack_.size() - n);
        stack_.push_back(v);
        break;
      }
      case 'd': {  // DICT (from MARK)
        ASSIGN_OR_RETURN(std::vector<PickleValue*> kv, PopMark());
        PickleValue* d = New(Kind::kDict);
        RETURN_IF_ERROR(SetItems(d, kv));
        stack_.push_back(d);
        break;
      }
      case 'a': {  // APPEND
        ASSIGN_OR_RETURN(PickleValue* v, Pop());
        ASSIGN_OR_RETURN(PickleValue* list, Top());
        RETURN_IF_ERROR(Append(list, {v}));
        break;
      }
      case 'e': case 0x90: {  // APPENDS, ADDITEMS
        ASSIGN_OR_RETURN(std::vector<PickleValue*> items, PopMark());
        ASSIGN_OR_RETURN(PickleValue* list, Top());
        RETURN_IF_ERROR(Append(list, items));
        break;
      }
      case 's': {  // SETITEM
        ASSIGN_OR_RETURN(PickleValue* v, Pop());
        ASSIGN_OR_RETURN(PickleValue* k, Pop());
        ASSIGN_OR_RETURN(PickleValue* d, Top());
        RETURN_IF_ERROR(SetItems(d, {k, v}));
        break;
      }
      case 'u': {  // SETITEMS
        ASSIGN_OR_RETURN(std::vector<PickleValue*> kv, PopMark());
        ASSIGN_OR_RETURN(PickleValue* d, Top());
        RETURN_IF_ERROR(SetItems(d, kv));
        break;
      }
      case 'p': case 'q': case 'r': {  // PUT (text), BINPUT, LONG_BINPUT
        ASSIGN_OR_RETURN(uint64_t i, MemoIndex(op));
        RETURN_IF_ERROR(Memo(i));
        break;
      }
      case 0x94: RETURN_IF_ERROR(Memo(memo_.size())); break;  // MEMOIZE
      case 'g': case 'h': case 'j': {  // GET (text), BINGET, LONG_BINGET
        ASSIGN_OR_RETURN(uint64_t i, MemoIndex(op));
        RETURN_IF_ERROR(Recall(i));
        break;
      }
      case 'c': {  // GLOBAL "module\nname\n"
        ASSIGN_OR_RETURN(std::string module, ReadLine());
        ASSIGN_OR_RETURN(std::string name, ReadLine());
        RETURN_IF_ERROR(PushGlobal(module, name));
        break;
      }
      case 0x93: {  // STACK_GLOBAL
        ASSIGN_OR_RETURN(PickleValue* name, Pop());
        ASSIGN_OR_RETURN(PickleValue* module, Pop());
        if (module->kind_ != Kind::kString || name->kind_ != Kind::kString) {
          return Error("STACK_GLOBAL needs two strings");
        }
        RETURN_IF_ERROR(PushGlobal(module->s_, name->s_));
        break;
      }
      case 'i': {  // INST "module\nname\n", arguments from MARK
        ASSIGN_OR_RETURN(std::string module, ReadLine());
        ASSIGN_OR_RETURN(std::string name, ReadLine());
        RETURN_IF_ERROR(PushGlobal(module, name));
        PickleValue* cls = stack_.back();
        stack_.pop_back();
        ASSIGN_OR_RETURN(std::vector<PickleValue*> items, PopMark());
        PickleValue* args = New(Kind::kTuple);
        args->items_.assign(items.begin(), items.end());
        ASSIGN_OR_RETURN(PickleValue* r, Call(cls, args));
        stack_.push_back(r);
        break;
      }
      case 'o': {  // OBJ: MARK cls args...
        ASSIGN_OR_RETURN(std::vector<PickleValue*> items, PopMark());
        if (items.empty()) return Error("OBJ without a class");
        PickleValue* args = New(Kind::kTuple);
        args->items_.assign(items.begin() + 1, items.end());
        ASSIGN_OR_RETURN(PickleValue* r, Call(items[0], args));
        stack_.push_back(r);
        break;
      }
      case 'R': case 0x81: {  // REDUCE, NEWOBJ
        ASSIGN_OR_RETURN(PickleValue* args, Pop());
        ASSIGN_OR_RETURN(PickleValue* callable, Pop());
        ASSIGN_OR_RETURN(PickleValue* r, Call(callable, args));
        stack_.push_back(r);
        break;
      }
      case 0x92: {  // NEWOBJ_EX: cls, args, kwargs (kwargs must be empty)
        ASSIGN_OR_RETURN(PickleValue* kwargs, Pop());
        ASSIGN_OR_RETURN(PickleValue* args, Pop());
        ASSIGN_OR_RETURN(PickleValue* cls, Pop());
        if (kwargs->kind_ != Kind::kDict || !kwargs->entries_.empty()) {
          return Error("NEWOBJ_EX with keyword arguments");
        }
        ASSIGN_OR_RETURN(PickleValue* r, Call(cls, args));
        stack_.push_back(r);
        break;
      }
      case 'b': {  // BUILD: state for dicts (OrderedDict._metadata) and tensors is dropped
        ASSIGN_OR_RETURN(PickleValue* state, Pop());
        ASSIGN_OR_RETURN(PickleValue* obj, Top());
        (void)state;
        if (obj->kind_ != Kind::kDict && obj->kind_ != Kind::kTensor) {
          return Error(absl::StrCat("BUILD on a ", PickleValue::KindName(obj->kind_)));
        }
        break;
      }
      case 'Q': {  // BINPERSID
        ASSIGN_OR_RETURN(PickleValue* pid, Pop());
        RETURN_IF_ERROR(PersistentLoad(pid));
        break;
      }
      case 'P': {  // PERSID (text): torch never writes it
        ASSIGN_OR_RETURN(std::string s, ReadLine());
        return Error(absl::StrCat("unsupported text persistent id '", s.substr(0, 32), "'"));
      }
      case 0x82: case 0x83: case 0x84:
        return Error("extension-registry opcodes (EXT1/2/4) are not supported");
      case 0x97: case 0x98:
        return Error("out-of-band buffers (protocol 5) are not supported");
      default:
        return Error(absl::StrFormat("unknown opcode 0x%02x", op));
    }
  }
}

}  // namespace ingot::formats
