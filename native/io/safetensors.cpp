#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "io/json.h"

namespace comeba {
namespace {

struct DtypeName {
  const char* name;
  torch::Dtype dtype;
};

// Every dtype Hugging Face checkpoints use, in both directions.
constexpr DtypeName kDtypes[] = {
    {"F64", torch::kFloat64}, {"F32", torch::kFloat32},  {"F16", torch::kFloat16},
    {"BF16", torch::kBFloat16}, {"I64", torch::kInt64},  {"I32", torch::kInt32},
    {"I16", torch::kInt16},   {"I8", torch::kInt8},      {"U8", torch::kUInt8},
    {"BOOL", torch::kBool},   {"F8_E4M3", torch::kFloat8_e4m3fn}, {"F8_E5M2", torch::kFloat8_e5m2},
    {"U16", torch::kUInt16},  {"U32", torch::kUInt32},   {"U64", torch::kUInt64},
};

[[noreturn]] void bad_file(const std::string& path, const std::string& what) {
  fail(ErrorCode::InvalidCheckpoint, "invalid safetensors file " + path + ": " + what);
}

torch::Dtype dtype_from_name(const std::string& name, const std::string& path, const std::string& tensor) {
  for (const auto& d : kDtypes)
    if (name == d.name) return d.dtype;
  bad_file(path, "tensor '" + tensor + "' has unknown dtype '" + name + "'");
}

const char* name_from_dtype(torch::Dtype dtype) {
  for (const auto& d : kDtypes)
    if (dtype == d.dtype) return d.name;
  fail(ErrorCode::InvalidArgument, std::string("cannot store dtype ") + c10::toString(dtype) + " in safetensors");
}

uint64_t read_le64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
bool valid_utf8(const uint8_t* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const uint8_t c = p[i];
    size_t len;
    uint32_t cp;
    if (c < 0x80) { ++i; continue; }
    if ((c & 0xE0) == 0xC0) { len = 2; cp = c & 0x1F; }
    else if ((c & 0xF0) == 0xE0) { len = 3; cp = c & 0x0F; }
    else if ((c & 0xF8) == 0xF0) { len = 4; cp = c & 0x07; }
    else return false;
    if (n - i < len) return false;
    for (size_t k = 1; k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    static constexpr uint32_t kLeast[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < kLeast[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += len;
  }
  return true;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') { out += '\\'; out += c; }
    else if (static_cast<unsigned char>(c) < 0x20) { char buf[8]; std::snprintf(buf, sizeof buf, "\\u%04x", c); out += buf; }
    else out += c;
  }
  return out;
}

// 0, or the errno that stopped the write.
int write_all(int fd, const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd, p, std::min<size_t>(n, size_t{1} << 30));
    if (w < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return 0;
}

// A full disk (or quota) is its own error: the caller frees space and saves again.
[[noreturn]] void fail_writing(const std::string& path, int err) {
  const bool full = err == ENOSPC || err == EDQUOT || err == EFBIG;
  fail(full ? ErrorCode::NoSpace : ErrorCode::InvalidArgument,
       "cannot write " + path + ": " + std::strerror(err) + (full ? " (the disk is full; free space and write again)" : ""));
}

}  // namespace

MappedFile::MappedFile(const std::string& path) : path_(path) {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer forever.
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) fail(ErrorCode::InvalidCheckpoint, "cannot open " + path + ": " + std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    fail(ErrorCode::InvalidCheckpoint, "cannot stat " + path);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    fail(ErrorCode::InvalidCheckpoint, path + " is not a regular file");
  }
  size_ = static_cast<size_t>(st.st_size);
  if (size_ > 0) {
    void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      ::close(fd);
      fail(ErrorCode::InvalidCheckpoint, "cannot map " + path + ": " + std::strerror(errno));
    }
    data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);  // the mapping stays valid without the descriptor
}

MappedFile::~MappedFile() {
  if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
}

SafetensorsFile::SafetensorsFile(const std::string& path) : file_(path) {
  if (file_.size() < 8) bad_file(path, "file is " + std::to_string(file_.size()) + " bytes, shorter than the 8-byte header length");
  const uint64_t header_len = read_le64(file_.data());
  if (header_len > file_.size() - 8)
    bad_file(path, "header length " + std::to_string(header_len) + " runs past the end of the file (" +
                       std::to_string(file_.size()) + " bytes)");
  data_offset_ = 8 + header_len;
  const size_t data_size = file_.size() - data_offset_;

  if (!valid_utf8(file_.data() + 8, header_len)) bad_file(path, "header is not valid UTF-8");
  Json header;
  try {
    header = Json::parse(std::string_view(reinterpret_cast<const char*>(file_.data() + 8), header_len));
  } catch (const std::invalid_argument& e) {
    bad_file(path, std::string("header is not valid JSON (") + e.what() + ")");
  }
  if (!header.is_object()) bad_file(path, "header is not a JSON object");

  for (const auto& [name, value] : header.members()) {
    if (name == "__metadata__") {
      if (!value.is_object()) bad_file(path, "__metadata__ is not an object");
      for (const auto& [key, v] : value.members())
        if (v.is_string()) metadata_[key] = v.as_string();
      continue;
    }
    const Json* dtype = value.find("dtype");
    const Json* shape = value.find("shape");
    const Json* offsets = value.find("data_offsets");
    if (!dtype || !dtype->is_string() || !shape || !shape->is_array() || !offsets || !offsets->is_array() ||
        offsets->items().size() != 2)
      bad_file(path, "tensor '" + name + "' lacks a valid dtype, shape or data_offsets");

    for (const auto& e : entries_)
      if (e.name == name) bad_file(path, "tensor '" + name + "' appears twice in the header");
    TensorEntry entry;
    entry.name = name;
    entry.dtype = dtype_from_name(dtype->as_string(), path, name);
    int64_t numel = 1;
    for (const auto& dim : shape->items()) {
      if (!dim.is_integer() || dim.as_int() < 0) bad_file(path, "tensor '" + name + "' has an invalid shape");
      if (dim.as_int() > 0 && numel > INT64_MAX / dim.as_int()) bad_file(path, "tensor '" + name + "' is too large");
      numel *= dim.as_int();
      entry.shape.push_back(dim.as_int());
    }
    for (const auto& off : offsets->items())
      if (!off.is_integer() || off.as_int() < 0) bad_file(path, "tensor '" + name + "' has invalid data_offsets");
    entry.begin = static_cast<size_t>(offsets->items()[0].as_int());
    entry.end = static_cast<size_t>(offsets->items()[1].as_int());
    if (entry.begin > entry.end || entry.end > data_size)
      bad_file(path, "tensor '" + name + "' data_offsets [" + std::to_string(entry.begin) + ", " +
                         std::to_string(entry.end) + "] lie outside the data section of " + std::to_string(data_size) +
                         " bytes");
    if (static_cast<uint64_t>(numel) > SIZE_MAX / c10::elementSize(entry.dtype))
      bad_file(path, "tensor '" + name + "' is too large");
    const size_t expected = static_cast<size_t>(numel) * c10::elementSize(entry.dtype);
    if (entry.end - entry.begin != expected)
      bad_file(path, "tensor '" + name + "' holds " + std::to_string(entry.end - entry.begin) +
                         " bytes but its dtype and shape need " + std::to_string(expected));
    entries_.push_back(std::move(entry));
  }

  // The tensors tile the data section exactly, as the format requires: no byte shared, no gap, nothing
  // after the last (a header length off by its padding shifts every tensor and is caught here). Sorting
  // by (begin, end) puts an empty tensor before a non-empty one at the same offset, so it hides nothing.
  std::vector<const TensorEntry*> order;
  for (const auto& e : entries_) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](auto* a, auto* b) { return a->begin != b->begin ? a->begin < b->begin : a->end < b->end; });
  size_t cursor = 0;
  std::string previous = "the start of the data section";
  for (const auto* e : order) {
    if (e->begin < cursor) bad_file(path, "tensor '" + e->name + "' overlaps " + previous);
    if (e->begin > cursor)
      bad_file(path, std::to_string(e->begin - cursor) + " bytes before tensor '" + e->name + "' belong to no tensor");
    cursor = e->end;
    previous = "tensor '" + e->name + "'";
  }
  if (cursor != data_size)
    bad_file(path, std::to_string(data_size - cursor) + " bytes at the end of the data section belong to no tensor");
}

torch::Tensor SafetensorsFile::load(const TensorEntry& entry, torch::Device device,
                                    c10::optional<torch::Dtype> dtype) const {
  auto tensor = torch::empty(entry.shape, torch::TensorOptions().dtype(entry.dtype));
  std::memcpy(tensor.data_ptr(), file_.data() + data_offset_ + entry.begin, entry.end - entry.begin);
  return tensor.to(device, dtype.value_or(entry.dtype));
}

void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata) {
  std::vector<torch::Tensor> data;
  std::string header = "{";
  if (!metadata.empty()) {
    header += "\"__metadata__\":{";
    bool first = true;
    for (const auto& [k, v] : metadata) {
      header += (first ? "\"" : ",\"") + json_escape(k) + "\":\"" + json_escape(v) + "\"";
      first = false;
    }
    header += "}";
  }
  size_t offset = 0;
  for (const auto& [name, t] : tensors) {
    if (t.is_sparse()) fail(ErrorCode::InvalidArgument, "cannot store sparse tensor '" + name + "'");
    auto cpu = t.detach().to(torch::kCPU).contiguous();
    const size_t bytes = cpu.numel() * cpu.element_size();
    std::string shape;
    for (int64_t d : cpu.sizes()) shape += (shape.empty() ? "" : ",") + std::to_string(d);
    header += std::string(header.size() > 1 ? "," : "") + "\"" + json_escape(name) + "\":{\"dtype\":\"" +
              name_from_dtype(cpu.scalar_type()) + "\",\"shape\":[" + shape + "],\"data_offsets\":[" +
              std::to_string(offset) + "," + std::to_string(offset + bytes) + "]}";
    offset += bytes;
    data.push_back(cpu);
  }
  header += "}";
  while ((8 + header.size()) % 8 != 0) header += ' ';  // keeps the data section 8-byte aligned

  // A name of our own: several writers (processes, or calls) may target the same file at once.
  static std::atomic<uint64_t> counter{0};
  const std::string tmp = path + ".tmp-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail_writing(tmp, errno);
  // On any failure the partial temporary goes: left behind, it would hold the very space a retry needs.
  auto abandon = [&](int err) {
    ::close(fd);
    ::unlink(tmp.c_str());
    fail_writing(path, err);
  };
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(static_cast<uint64_t>(header.size()) >> (8 * i));
  if (int err = write_all(fd, len, 8)) abandon(err);
  if (int err = write_all(fd, header.data(), header.size())) abandon(err);
  for (const auto& t : data)
    if (int err = write_all(fd, t.data_ptr(), t.numel() * t.element_size())) abandon(err);
  // fsync: a checkpoint is complete once it is on disk; and a full disk may only show here (NFS, quotas).
  if (::fsync(fd) != 0) abandon(errno);
  if (::close(fd) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail_writing(path, err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp.c_str());
    fail(ErrorCode::InvalidArgument, "cannot rename " + tmp + " to " + path + ": " + std::strerror(err));
  }
}

// FNV-1a over 64-bit little-endian words (then the tail bytes): each step is a bijection of the running
// hash, so any change to one word changes the digest; it runs at memory speed.
uint64_t fnv1a_words(uint64_t hash, const uint8_t* p, size_t n) {
  constexpr uint64_t kPrime = 1099511628211ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, p + i, 8);
    hash = (hash ^ word) * kPrime;
  }
  for (; i < n; ++i) hash = (hash ^ p[i]) * kPrime;
  return hash;
}

std::string hex64(uint64_t value) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(value));
  return buf;
}

std::string tensor_digest(const torch::Tensor& tensor) {
  auto t = tensor.detach().to(torch::kCPU).contiguous();
  return hex64(fnv1a_words(kFnvOffsetBasis, static_cast<const uint8_t*>(t.data_ptr()), t.numel() * t.element_size()));
}

std::string tensor_digests(const std::map<std::string, torch::Tensor>& tensors) {
  std::string json = "{";
  for (const auto& [name, t] : tensors) json += (json.size() > 1 ? ",\"" : "\"") + name + "\":\"" + tensor_digest(t) + "\"";
  return json + "}";
}

}  // namespace comeba
