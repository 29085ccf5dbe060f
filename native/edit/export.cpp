#include "edit/export.h"

#include <map>

#include "common/error.h"
#include "io/safetensors.h"

namespace comeba {

int64_t export_merged(const Editor& editor, const std::vector<ExportFile>& files) {
  const auto hooks = editor.inference_hooks();
  const auto& layers = hooks->layers();
  int64_t bytes = 0;
  torch::NoGradGuard no_grad;
  for (const auto& file : files) {
    SafetensorsFile source(file.source);
    std::map<std::string, torch::Tensor> tensors;
    for (const auto& entry : source.entries()) tensors[entry.name] = source.load(entry, torch::kCPU, c10::nullopt);
    for (const auto& m : file.merged) {
      auto it = tensors.find(m.tensor);
      if (it == tensors.end()) fail(ErrorCode::InvalidArgument, file.source + " holds no tensor " + m.tensor);
      if (m.layer_index < 0 || m.layer_index >= static_cast<int64_t>(layers.size()))
        fail(ErrorCode::InvalidArgument, "layer index " + std::to_string(m.layer_index) + " is not one of the editor's");
      auto delta = layers[m.layer_index].delta.to(torch::kCPU, torch::kFloat32);  // (C, F)
      if (m.transposed) delta = delta.t();
      auto& w = it->second;
      if (w.sizes() != delta.sizes())
        fail(ErrorCode::InvalidCheckpoint, m.tensor + " in " + file.source + " has shape " + c10::str(w.sizes()) + ", the edit's is " +
                                           c10::str(delta.sizes()) + ": the checkpoint is not the editor's model");
      w = (w.to(torch::kFloat32) + delta).to(w.scalar_type());
    }
    for (const auto& [name, t] : tensors) bytes += static_cast<int64_t>(t.numel() * t.element_size());
    write_safetensors(file.target, tensors, source.metadata());
  }
  return bytes;
}

}  // namespace comeba
