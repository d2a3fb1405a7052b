# CMake toolchain file picked up by deno_core's QuickJS build (via .cargo/config.toml).
# Offline machines cannot `git clone` SIMDE from GitHub; Debian's libsimde-dev ships
# the same headers, so point FetchContent at them when they are installed.
if(EXISTS "/usr/include/simde/simde-common.h")
  set(FETCHCONTENT_SOURCE_DIR_SIMDE "/usr/include" CACHE PATH "")
endif()
