# The comeba target for node-gyp, which prebuildify drives. Same sources, flags and libtorch as
# CMakeLists.txt; both lists come from scripts/gyp-config.mjs so they cannot drift apart.
{
  "targets": [{
    "target_name": "comeba",
    "sources": ["<!@(node scripts/gyp-config.mjs sources)"],
    "include_dirs": ["native", "<!(node -p \"require('node-addon-api').include_dir\")"],
    "defines": ["NAPI_VERSION=8", "NODE_ADDON_API_DISABLE_DEPRECATED", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "<!@(node scripts/gyp-config.mjs defines)"],
    "cflags!": ["-fno-exceptions"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17"],
    "cflags_cc": ["-O2", "-fexceptions", "-frtti", "-fvisibility=hidden", "-fvisibility-inlines-hidden", "<!@(node scripts/gyp-config.mjs cflags_cc)"],
    "libraries": ["<!@(node scripts/gyp-config.mjs libraries)"]
  }]
}
