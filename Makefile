# libfilefetch, the C library of ffi/, built with cargo and installed like any C library.
#
#   make                                   # build it (cargo, release profile)
#   make install PREFIX=/usr/local         # install it (DESTDIR=/stage to stage a package)
#   make uninstall PREFIX=/usr/local       # remove what `make install` put there
#   make check                             # the C tests: bash tests/run-c.sh
#
# `make install` puts under $(DESTDIR):
#   $(INCLUDEDIR)/filefetch.h
#   $(LIBDIR)/libfilefetch.so.$(VERSION), the shared library, whose soname is
#       libfilefetch.so.$(MAJOR) (set by ffi/build.rs), with the links
#       libfilefetch.so.$(MAJOR) -> libfilefetch.so.$(VERSION) and
#       libfilefetch.so -> libfilefetch.so.$(MAJOR)
#   $(LIBDIR)/libfilefetch.a, the static library
#   $(LIBDIR)/pkgconfig/filefetch.pc (from ffi/filefetch.pc.in)
#   $(LIBDIR)/cmake/filefetch/filefetchConfig.cmake and filefetchConfigVersion.cmake (from
#       ffi/cmake/*.in): find_package(filefetch CONFIG) gives the targets filefetch::filefetch
#       (shared) and filefetch::filefetch_static
# The installed files name PREFIX, never DESTDIR, which only prefixes where they are copied.
# The CMake files find the tree from their own location (relocatable), as does pkg-config's
# --define-prefix, when LIBDIR and INCLUDEDIR are under PREFIX (the default).
#
# Variables:
#   PREFIX      installation prefix (/usr/local)
#   LIBDIR      $(PREFIX)/lib; e.g. $(PREFIX)/lib/x86_64-linux-gnu on a multiarch system
#   INCLUDEDIR  $(PREFIX)/include
#   DESTDIR     staging directory prepended to every installed path (empty)
#   PROFILE     cargo profile: release (default) or debug
#   CARGO       cargo command (cargo); CARGO_FLAGS, extra flags such as --locked --offline
#   CARGO_TARGET_DIR  cargo's target directory (./target), as cargo reads it
#
# `make install` runs cargo, which finds the build up to date after `make`. Where cargo is
# not on the PATH (`sudo make install` with a rustup toolchain), it installs what `make`
# built before, and says so.
#
# For ELF systems (Linux, the BSDs); Windows builds come from cargo (see tests/run-windows.sh).

PREFIX ?= /usr/local
override PREFIX := $(patsubst %/,%,$(PREFIX))
LIBDIR ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
DESTDIR ?=
PROFILE ?= release
CARGO ?= cargo
CARGO_FLAGS ?=
INSTALL ?= install

repo := $(patsubst %/,%,$(dir $(abspath $(lastword $(MAKEFILE_LIST)))))
target_dir := $(abspath $(or $(CARGO_TARGET_DIR),$(repo)/target))
cargo_profile := $(if $(filter debug,$(PROFILE)),dev,$(PROFILE))
out := $(target_dir)/$(if $(filter dev,$(cargo_profile)),debug,$(cargo_profile))
shared := $(out)/libfilefetch.so
static := $(out)/libfilefetch.a
# What the static library needs besides itself, as rustc reports it when it builds it.
native_libs := $(out)/libfilefetch.native-static-libs

# The version of the workspace, which ffi/Cargo.toml inherits; its first number is the
# soname's (ffi/build.rs reads the same from cargo).
VERSION := $(shell sed -n '/^\[workspace\.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' \
    "$(repo)/Cargo.toml")
MAJOR := $(firstword $(subst ., ,$(VERSION)))
ifeq ($(MAJOR),)
$(error cannot read the version from $(repo)/Cargo.toml ([workspace.package] version))
endif

# Paths as the installed files write them: relative to the prefix where they are under it.
libdir_rel := $(patsubst $(PREFIX)/%,%,$(filter $(PREFIX)/%,$(LIBDIR)))
includedir_rel := $(patsubst $(PREFIX)/%,%,$(filter $(PREFIX)/%,$(INCLUDEDIR)))
pc_libdir := $(if $(libdir_rel),$${prefix}/$(libdir_rel),$(LIBDIR))
pc_includedir := $(if $(includedir_rel),$${prefix}/$(includedir_rel),$(INCLUDEDIR))
# From $(LIBDIR)/cmake/filefetch up to the prefix: one ".." a component.
empty :=
space := $(empty) $(empty)
cmake_up := $(subst $(space),/,$(foreach c,$(subst /, ,$(libdir_rel)/cmake/filefetch),..))
cmake_libdir := $(if $(libdir_rel),$${_filefetch_prefix}/$(libdir_rel),$(LIBDIR))
cmake_includedir := $(if $(includedir_rel),$${_filefetch_prefix}/$(includedir_rel),$(INCLUDEDIR))

# Without cross-crate LTO (the workspace's release profile has lto = "thin"): ffi/build.rs
# keeps the dependencies' symbols out of the shared library's exports with
# --exclude-libs,ALL, which works on the archives (rlibs) the linker gets without LTO; with
# LTO every crate arrives as one object file and a dependency's `#[no_mangle]` functions
# (crc-fast's C API, under object_store) would be exported too. `build` checks the result.
cargo_rustc = $(CARGO) rustc $(CARGO_FLAGS) --config 'profile.$(cargo_profile).lto=false' \
    -p filefetch-ffi --lib --profile $(cargo_profile) \
    -- --print native-static-libs="$(native_libs)"

.PHONY: all build install uninstall check
all: build

# `cargo rustc` (not `cargo build`) to pass --print, which writes the static library's
# system libraries into $(native_libs) whenever rustc builds the crate. If the crate is up to
# date but that file is missing, the crate is cleaned and built again to write it. Then the
# shared library's exports are checked (with nm, where there is one): only filefetch_*.
build:
	@if command -v $(firstword $(CARGO)) >/dev/null 2>&1; then \
	    set -e; cd "$(repo)"; \
	    echo '$(cargo_rustc)'; $(cargo_rustc); \
	    if [ ! -s "$(native_libs)" ]; then \
	        $(CARGO) clean $(CARGO_FLAGS) -p filefetch-ffi --profile $(cargo_profile); \
	        $(cargo_rustc); \
	    fi; \
	elif [ -f "$(shared)" ] && [ -f "$(static)" ] && [ -s "$(native_libs)" ]; then \
	    echo "note: $(CARGO) not found; installing the library built before in $(out)"; \
	else \
	    echo "error: $(CARGO) not found, and no library built in $(out) (run make first)" >&2; \
	    exit 1; \
	fi
	@if command -v nm >/dev/null 2>&1; then \
	    foreign="$$(nm -D --defined-only -P "$(shared)" | awk '$$1 !~ /^filefetch_/ { print $$1 }')"; \
	    if [ -n "$$foreign" ]; then \
	        echo "error: $(shared) exports more than filefetch_*:" $$foreign >&2; exit 1; \
	    fi; \
	fi

install: build
	$(INSTALL) -d "$(DESTDIR)$(INCLUDEDIR)" "$(DESTDIR)$(LIBDIR)/pkgconfig" \
	    "$(DESTDIR)$(LIBDIR)/cmake/filefetch"
	$(INSTALL) -m 644 "$(repo)/include/filefetch.h" "$(DESTDIR)$(INCLUDEDIR)/filefetch.h"
	$(INSTALL) -m 755 "$(shared)" "$(DESTDIR)$(LIBDIR)/libfilefetch.so.$(VERSION)"
	ln -sf "libfilefetch.so.$(VERSION)" "$(DESTDIR)$(LIBDIR)/libfilefetch.so.$(MAJOR)"
	ln -sf "libfilefetch.so.$(MAJOR)" "$(DESTDIR)$(LIBDIR)/libfilefetch.so"
	$(INSTALL) -m 644 "$(static)" "$(DESTDIR)$(LIBDIR)/libfilefetch.a"
	libs="$$(cat "$(native_libs)")"; \
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(pc_libdir)|' \
	    -e 's|@INCLUDEDIR@|$(pc_includedir)|' -e 's|@VERSION@|$(VERSION)|' \
	    -e "s|@LIBS_PRIVATE@|$$libs|" \
	    "$(repo)/ffi/filefetch.pc.in" >"$(DESTDIR)$(LIBDIR)/pkgconfig/filefetch.pc"
	cmake_libs="$$(for f in $$(cat "$(native_libs)"); do echo "$${f#-l}"; done | paste -sd ';' -)"; \
	sed -e 's|@CMAKE_UP@|$(cmake_up)|' -e 's|@CMAKE_LIBDIR@|$(cmake_libdir)|' \
	    -e 's|@CMAKE_INCLUDEDIR@|$(cmake_includedir)|' -e 's|@VERSION@|$(VERSION)|g' \
	    -e 's|@MAJOR@|$(MAJOR)|g' -e "s|@CMAKE_STATIC_LIBS@|$$cmake_libs|" \
	    "$(repo)/ffi/cmake/filefetchConfig.cmake.in" \
	    >"$(DESTDIR)$(LIBDIR)/cmake/filefetch/filefetchConfig.cmake"
	sed -e 's|@VERSION@|$(VERSION)|g' -e 's|@MAJOR@|$(MAJOR)|g' \
	    "$(repo)/ffi/cmake/filefetchConfigVersion.cmake.in" \
	    >"$(DESTDIR)$(LIBDIR)/cmake/filefetch/filefetchConfigVersion.cmake"
	chmod 644 "$(DESTDIR)$(LIBDIR)/pkgconfig/filefetch.pc" \
	    "$(DESTDIR)$(LIBDIR)/cmake/filefetch/filefetchConfig.cmake" \
	    "$(DESTDIR)$(LIBDIR)/cmake/filefetch/filefetchConfigVersion.cmake"

# Removes the files of this version; directories only if that left them empty.
uninstall:
	rm -f "$(DESTDIR)$(INCLUDEDIR)/filefetch.h" \
	    "$(DESTDIR)$(LIBDIR)/libfilefetch.so" "$(DESTDIR)$(LIBDIR)/libfilefetch.so.$(MAJOR)" \
	    "$(DESTDIR)$(LIBDIR)/libfilefetch.so.$(VERSION)" "$(DESTDIR)$(LIBDIR)/libfilefetch.a" \
	    "$(DESTDIR)$(LIBDIR)/pkgconfig/filefetch.pc" \
	    "$(DESTDIR)$(LIBDIR)/cmake/filefetch/filefetchConfig.cmake" \
	    "$(DESTDIR)$(LIBDIR)/cmake/filefetch/filefetchConfigVersion.cmake"
	rmdir "$(DESTDIR)$(LIBDIR)/cmake/filefetch" 2>/dev/null || true
	rmdir "$(DESTDIR)$(LIBDIR)/cmake" "$(DESTDIR)$(LIBDIR)/pkgconfig" 2>/dev/null || true

check:
	bash "$(repo)/tests/run-c.sh"
