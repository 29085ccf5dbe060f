// Writing an edited model as a Hugging Face checkpoint: W₀ + ΔW in each edited weight, every other tensor as stored.
#pragma once

#include <string>
#include <vector>

#include "edit/editor.h"

namespace comeba {

// One edited weight inside a safetensors file: its tensor name, the editor's layer index (0 … L−1), and whether
// the file stores it transposed against ΔW's (d_model, d_ff) (GPT-2's Conv1D keeps (d_ff, d_model)).
struct MergedWeight {
  std::string tensor;
  int64_t layer_index = 0;
  bool transposed = false;
};

// A safetensors file of the source checkpoint and where its edited copy goes.
struct ExportFile {
  std::string source, target;
  std::vector<MergedWeight> merged;
};

// Writes each target: every tensor of its source in its stored dtype and order of names, the merged ones as
// W₀ + ΔW computed in float32 and rounded once to the stored dtype; the source's metadata kept. Returns the bytes
// of tensor data written.
int64_t export_merged(const Editor& editor, const std::vector<ExportFile>& files);

}  // namespace comeba
