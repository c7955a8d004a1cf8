#!/usr/bin/env bash
# Set up glean-sr on a fresh Debian/Ubuntu machine: system packages (a browser for the tests,
# fonts for the glyph data set), a virtual environment in .venv, PyTorch, and glean-sr with every
# optional extra.
#   GLEAN_SR_TORCH  the torch requirement to install first (default torch==2.13.0, CPU build here;
#                   on a CUDA machine use e.g. "torch" or a specific +cuXXX wheel)
#   GLEAN_SR_NO_APT=1  skip the system packages (only the test suite and build-glyphs need them)
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
    chromium  # headless Chromium renders the eval report in the tests
    fonts-noto-color-emoji  # colour emoji for synthetic test pictures
    # Latin text fonts (about 110 MB): `glean-sr build-glyphs` renders its glyph data set from
    # their 900-odd faces of about 180 families
    fonts-dejavu-core fonts-dejavu-extra fonts-liberation fonts-liberation2 fonts-freefont-ttf
    fonts-croscore fonts-crosextra-caladea fonts-crosextra-carlito fonts-roboto-unhinted
    fonts-roboto-slab fonts-open-sans fonts-lato fonts-cantarell fonts-go fonts-hack
    fonts-firacode fonts-jetbrains-mono fonts-inconsolata fonts-anonymous-pro fonts-cmu
    fonts-linuxlibertine fonts-ebgaramond fonts-junicode fonts-oldstandard fonts-cabin
    fonts-comfortaa fonts-dosis fonts-karla fonts-quicksand fonts-play fonts-b612
    fonts-courier-prime fonts-comic-neue fonts-humor-sans fonts-lobster fonts-lobstertwo
    fonts-dancingscript fonts-kaushanscript fonts-urw-base35 fonts-texgyre fonts-paratype
    fonts-sil-charis fonts-sil-gentium fonts-sil-gentiumplus fonts-sil-andika fonts-sil-doulos
    fonts-mononoki fonts-adf-accanthis fonts-adf-baskervald fonts-adf-berenis fonts-adf-gillius
    fonts-adf-ikarius fonts-adf-irianis fonts-adf-libris fonts-adf-mekanus fonts-adf-oldania
    fonts-adf-romande fonts-adf-solothurn fonts-adf-switzera fonts-adf-tribun
    fonts-adf-universalis fonts-adf-verana fonts-averia-gwf fonts-averia-sans-gwf
    fonts-averia-serif-gwf fonts-lmodern fonts-stix fonts-inter fonts-manrope fonts-vollkorn
    fonts-yanone-kaffeesatz fonts-league-spartan fonts-fantasque-sans fonts-hermit
    fonts-monofur fonts-oxygen fonts-quattrocento fonts-cardo fonts-sora fonts-tuffy
    fonts-yrsa-rasa fonts-elstob fonts-fanwood fonts-goudybookletter fonts-prociono
    fonts-arapey fonts-allerta fonts-clear-sans fonts-jura fonts-opendin fonts-ocr-a
    fonts-ocr-b fonts-opendyslexic fonts-femkeklaver fonts-junction fonts-lindenhill
    fonts-blankenburg fonts-gotico-antiqua fonts-century-catalogue fonts-dkg-handwriting
    fonts-kristi fonts-leckerli-one fonts-rufscript fonts-agave
    fonts-noto-mono fonts-tiresias fonts-routed-gothic fonts-karmilla fonts-national-park
    fonts-lemonada fonts-cabinsketch
)
if [[ "${GLEAN_SR_NO_APT:-0}" != "1" ]] && command -v apt-get >/dev/null; then
    missing=()
    for p in "${APT_PACKAGES[@]}"; do
        dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
    done
    if ((${#missing[@]})); then
        SUDO=""
        [[ $(id -u) -ne 0 ]] && SUDO="sudo"
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
            "${missing[@]}" >/dev/null
    fi
fi

PYTHON="${PYTHON:-python3}"
[[ -x .venv/bin/python ]] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first: a bare "torch" requirement would otherwise pull a multi-GB CUDA build
.venv/bin/python -m pip install -q "${GLEAN_SR_TORCH:-torch==2.13.0}"
.venv/bin/python -m pip install -q -e ".[all,test]"
echo "glean-sr installed: $(.venv/bin/glean-sr --version)"
