// The editor's state on disk, every file written through a temporary file and a rename so a kill never leaves
// half a file, every tensor with a digest verified before any value is used.
//   Full state (comeba-editor-state/2): ΔW and C_accu per layer, α, the layer list and the batch count.
//   Incremental: a full state as the base, then per checkpoint a keys file (comeba-editor-keys/1: K (F, n) of
//   each batch since the previous checkpoint) and a delta file (comeba-editor-delta/1: ΔW, α, layers, step).
//   Loading rebuilds C_accu = base + Σ K Kᵀ batch by batch, the same operations in the same order as the
//   edits made them, so the state is bit-identical; a checkpoint writes L·(C·F·4 + F·n·8) bytes, not L·F²·8.
#pragma once

#include <string>

#include "edit/editor.h"

namespace comeba {

// Returns the number of bytes written.
int64_t save_editor_state(Editor& editor, const std::string& path);
// Replaces the editor's state with the file's; returns its batch count. Nothing changes on error.
int64_t load_editor_state(Editor& editor, const std::string& path);
// Writes the keys of the batches after `from_step` (held by the editor: Editor::hold_keys_after) to `keys_path`
// and ΔW, α, layers and step to `delta_path`. Returns the bytes written (both files).
int64_t save_editor_increment(Editor& editor, const std::string& keys_path, const std::string& delta_path, int64_t from_step);
// Restores the full state `base_path`, then each keys file in order (each must start where the previous ended),
// then ΔW and α of `delta_path` (at the last keys file's step; empty: the base's). Returns the batch count;
// nothing changes on error.
int64_t load_editor_chain(Editor& editor, const std::string& base_path, const std::vector<std::string>& keys_paths,
                          const std::string& delta_path);
// FNV-1a over every state tensor's bytes, α and the batch count: equal state ⇔ equal checksum.
std::string editor_state_checksum(const Editor& editor);

}  // namespace comeba
