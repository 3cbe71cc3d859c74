#!/usr/bin/env bash
# Installs the Debian packages aigw uses, when they are missing and we can (root + apt-get);
# otherwise says what to install. Usage: scripts/system-packages.sh run|test
set -euo pipefail
purpose=${1:-run}

need=()
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
# llama-cpp-python compiles llama.cpp on install (cmake itself comes from PyPI).
command -v g++ >/dev/null || need+=(g++)
python3 -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" \
  || need+=(python3-dev)
# OCR (knowledge-base images and scanned PDFs, /api/ocr): Tesseract 5 and the 12 languages the API names.
command -v tesseract >/dev/null || need+=(tesseract-ocr)
for lang in eng ben fra spa deu ara hin jpn kor chi-sim por rus; do
  dpkg -s "tesseract-ocr-$lang" >/dev/null 2>&1 || need+=("tesseract-ocr-$lang")
done
# Text to speech in the languages no packaged neural voice speaks: the espeak-ng program.
command -v espeak-ng >/dev/null || need+=(espeak-ng)
if [ "$purpose" = test ]; then
  command -v redis-server >/dev/null || need+=(redis-server)
  # Test documents are rendered with DejaVu Sans (Latin, Cyrillic, Arabic), WenQuanYi Micro Hei (Chinese, Japanese,
  # Korean) and Lohit (Devanagari, Bengali).
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
  for font in fonts-wqy-microhei fonts-lohit-deva fonts-lohit-beng-bengali; do
    dpkg -s "$font" >/dev/null 2>&1 || need+=("$font")
  done
  # Test passports and ID cards print their machine-readable zone in OCR-B, as real ones do.
  dpkg -s fonts-ocr-b >/dev/null 2>&1 || need+=(fonts-ocr-b)
fi
[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing Debian packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
else
  echo "aigw needs these Debian packages: ${need[*]}" >&2
  echo "install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
