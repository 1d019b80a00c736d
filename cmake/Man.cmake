# Man: the man pages. docs/man/NAME.SECTION.scd is the one source of each
# page; at build time scdoc turns it into roff in the build tree (man/), and
# `cmake --install` puts it in ${CMAKE_INSTALL_MANDIR}/manSECTION, not
# compressed (dh_compress does that for the package). DLQD_MAN is on when
# scdoc is found; tests/CMakeLists.txt checks the pages (man/* tests).
#
# Included from CMakeLists.txt it declares the pages; run as a script it
# converts one page, since scdoc only reads stdin and the version goes into
# the page's footer:
#
#   cmake -DSCDOC=/usr/bin/scdoc -DIN=dlqd.8.scd -DOUT=dlqd.8 -DVERSION=0.1.0 -P Man.cmake
if(CMAKE_SCRIPT_MODE_FILE)
  # A script has no policies of its own: without this, "@VERSION@" below
  # would be expanded before string(REPLACE) sees it (CMP0053).
  cmake_minimum_required(VERSION 3.18)
  if(NOT DEFINED SCDOC OR NOT DEFINED IN OR NOT DEFINED OUT OR NOT DEFINED VERSION)
    message(FATAL_ERROR "usage: cmake -DSCDOC=scdoc -DIN=page.scd -DOUT=page -DVERSION=x -P Man.cmake")
  endif()
  file(READ "${IN}" text)
  string(REPLACE "@VERSION@" "${VERSION}" text "${text}")
  # Written next to OUT, so a failed run leaves no half page behind it.
  file(WRITE "${OUT}.scd" "${text}")
  execute_process(COMMAND "${SCDOC}" INPUT_FILE "${OUT}.scd" OUTPUT_FILE "${OUT}.tmp"
                  ERROR_VARIABLE err RESULT_VARIABLE rc)
  file(REMOVE "${OUT}.scd")
  if(NOT rc EQUAL 0)
    file(REMOVE "${OUT}.tmp")
    # scdoc says "Error at LINE:COL: ..."; the lines are those of IN.
    message(FATAL_ERROR "${IN}: ${err}")
  endif()
  file(RENAME "${OUT}.tmp" "${OUT}")
else()
  find_program(SCDOC scdoc)
  if(SCDOC)
    set(dlqd_man_default ON)
  else()
    set(dlqd_man_default OFF)
  endif()
  option(DLQD_MAN "Build and install the man pages (needs scdoc)" ${dlqd_man_default})
  if(DLQD_MAN)
    if(NOT SCDOC)
      message(FATAL_ERROR "DLQD_MAN is ON but scdoc was not found (apt-get install scdoc)")
    endif()
    file(GLOB man_sources CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/docs/man/*.scd)
    set(man_pages)
    foreach(src ${man_sources})
      get_filename_component(page ${src} NAME)
      string(REGEX REPLACE "\\.scd$" "" page ${page})
      string(REGEX MATCH "[1-9]$" section ${page})
      set(out ${CMAKE_BINARY_DIR}/man/${page})
      add_custom_command(OUTPUT ${out}
        COMMAND ${CMAKE_COMMAND} -DSCDOC=${SCDOC} -DIN=${src} -DOUT=${out}
                -DVERSION=${PROJECT_VERSION} -P ${CMAKE_SOURCE_DIR}/cmake/Man.cmake
        DEPENDS ${src} ${CMAKE_SOURCE_DIR}/cmake/Man.cmake
        COMMENT "scdoc ${page}" VERBATIM)
      install(FILES ${out} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
      list(APPEND man_pages ${out})
    endforeach()
    file(MAKE_DIRECTORY ${CMAKE_BINARY_DIR}/man)
    add_custom_target(man ALL DEPENDS ${man_pages})
  endif()
endif()
