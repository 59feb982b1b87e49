# Writes a C++ file defining kWebPage / kWebPageSize with the bytes of INPUT.
# Run as: cmake -DINPUT=... -DOUTPUT=... -P embed_file.cmake
file(READ "${INPUT}" hex HEX)
string(LENGTH "${hex}" hex_len)
math(EXPR size "${hex_len} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
# Break the initializer into lines of 32 bytes so compilers and diffs cope.
string(REGEX REPLACE "((0x[0-9a-f][0-9a-f],){32})" "\\1\n" bytes "${bytes}")
file(WRITE "${OUTPUT}.tmp"
  "// Generated from ${INPUT} by embed_file.cmake; do not edit.\n"
  "#include \"web_page.h\"\n\nnamespace edgekv_server {\n\n"
  "const unsigned char kWebPage[] = {\n${bytes}0x00};\n"
  "const size_t kWebPageSize = ${size};\n\n}  // namespace edgekv_server\n")
file(RENAME "${OUTPUT}.tmp" "${OUTPUT}")
