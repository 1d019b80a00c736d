# embed: writes the bytes of the file IN to OUT as a C initializer list
# ("0x3c,0x21,..."), for a .c file to #include inside a char array. It runs
# as `cmake -P`, so embedding a file needs nothing the build does not already
# have (no xxd).
#
#   cmake -DIN=page.html -DOUT=page_html.h -P embed.cmake
if(NOT DEFINED IN OR NOT DEFINED OUT)
  message(FATAL_ERROR "usage: cmake -DIN=file -DOUT=header -P embed.cmake")
endif()
file(READ "${IN}" hex HEX)
# 16 bytes a line, so that a diff or a debugger can show it (CMake's regex
# has no {n}: string(REPEAT) spells the pattern out).
string(REPEAT "[0-9a-f]" 32 line)
string(REGEX REPLACE "(${line})" "\\1\n" hex "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
get_filename_component(name "${IN}" NAME)
file(WRITE "${OUT}" "/* ${name}, embedded by cmake/embed.cmake: edit ${name}, not this. */\n${bytes}\n")
