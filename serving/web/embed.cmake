# serving/web/embed.cmake — writes a file's bytes as a C++ array initializer, for the page
# `retnet serve` embeds (serving/web_ui.cpp includes the result). Run at build time by
# serving/CMakeLists.txt: cmake -DIN=index.html -DOUT=web_ui_html.inc -P embed.cmake.
# Bytes rather than a raw string literal: nothing in the page can end the literal early.
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" hex_len)
if(hex_len EQUAL 0)
  message(FATAL_ERROR "embed.cmake: ${IN} is empty")
endif()
# the page's <style> and <script> carry the nonce placeholder web_ui.cpp fills in; without
# it the Content-Security-Policy refuses them and the browser shows a dead page
file(READ "${IN}" text)
string(REGEX MATCHALL "__RN_CSP_NONCE__" holes "${text}")
list(LENGTH holes n_holes)
if(NOT n_holes EQUAL 2)
  message(FATAL_ERROR "embed.cmake: ${IN} must have __RN_CSP_NONCE__ twice (<style nonce> and <script nonce>), "
                      "has it ${n_holes} times")
endif()
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
string(REPEAT "0x[0-9a-f][0-9a-f]," 20 row)
string(REGEX REPLACE "(${row})" "\\1\n" bytes "${bytes}")
get_filename_component(in_name "${IN}" NAME)
file(WRITE "${OUT}.tmp" "// generated from serving/web/${in_name} by serving/web/embed.cmake; do not edit\n${bytes}\n")
# replaced only when changed, so an unchanged page recompiles nothing
file(COPY_FILE "${OUT}.tmp" "${OUT}" ONLY_IF_DIFFERENT)
file(REMOVE "${OUT}.tmp")
