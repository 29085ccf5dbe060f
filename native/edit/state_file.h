// The editor's state on disk: one safetensors file with ΔW and C_accu per layer, α, the layer list and the
// batch count, written through a temporary file and a rename so a kill never leaves half a file.
#pragma once

#include <string>

#include "edit/editor.h"

namespace comeba {

// Returns the number of bytes written.
int64_t save_editor_state(const Editor& editor, const std::string& path);
// Replaces the editor's state with the file's; returns its batch count. Nothing changes on error.
int64_t load_editor_state(Editor& editor, const std::string& path);
// FNV-1a over every state tensor's bytes, α and the batch count: equal state ⇔ equal checksum.
std::string editor_state_checksum(const Editor& editor);

}  // namespace comeba
