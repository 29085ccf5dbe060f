// safetensors files: memory-mapped reading with every header field bounds-checked, and atomic writing.
// One dtype table serves both directions; every error names the file (and tensor) it is about.
#pragma once

#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

namespace comeba {

// A read-only memory map of a whole file, unmapped when it goes out of scope.
class MappedFile {
 public:
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

struct TensorEntry {
  std::string name;
  torch::Dtype dtype;
  std::vector<int64_t> shape;
  size_t begin = 0;  // byte offsets into the data section
  size_t end = 0;
};

// An opened safetensors file whose header has been fully validated.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);

  const std::vector<TensorEntry>& entries() const { return entries_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  const std::string& path() const { return file_.path(); }

  // Copies one tensor out of the map (the map may be unaligned), then converts it.
  torch::Tensor load(const TensorEntry& entry, torch::Device device, c10::optional<torch::Dtype> dtype) const;

 private:
  MappedFile file_;
  size_t data_offset_ = 0;
  std::vector<TensorEntry> entries_;
  std::map<std::string, std::string> metadata_;
};

// A 64-bit FNV-1a digest of a tensor's bytes as stored (16 hex digits), and a JSON object of every tensor's: the
// "digests" metadata that editor states and statistics files carry and verify at load. Not cryptographic: it
// guards against corruption (a flipped bit, a truncated copy). lib/statistics/Statistics.ts computes the same.
std::string tensor_digest(const torch::Tensor& tensor);
// The hash behind it, for digests over several buffers (the editor's state checksum): FNV-1a over 64-bit words.
// Not FNV's published offset basis (14695981039346656037, one digit longer): kept, as every state file written
// so far carries digests from it.
constexpr uint64_t kFnvOffsetBasis = 1469598103934665603ULL;
uint64_t fnv1a_words(uint64_t hash, const uint8_t* p, size_t n);
std::string hex64(uint64_t value);
std::string tensor_digests(const std::map<std::string, torch::Tensor>& tensors);

// Writes tensors (moved to CPU, made contiguous) to `path` through a temporary file and a rename.
void write_safetensors(const std::string& path, const std::map<std::string, torch::Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata);

}  // namespace comeba
