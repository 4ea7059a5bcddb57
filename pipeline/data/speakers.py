"""Many speakers for a speaker model that must work on voices it never heard.

Real recordings shipped in Debian packages whose licences allow commercial use, one speaker
label per voice (a voice folder is taken to be one person; the six demo folders come from
`pipeline.data.asterisk`, where Allison's two languages are one speaker):

- Asterisk prompts: the demo voices, plus `asterisk-prompt-es-co` (Colombian Spanish, July
  E. Jiménez, GPL-2) and `asterisk-prompt-fr-armelle` (French, Armelle Desjardins, BSD-style):
  8 kHz raw GSM 6.10 files.
- KLettres (`klettres-data`, GPL-2+): letters and syllables, one native speaker a language.
- KTuberling (`ktuberling-data`, GPL-2+): object names, one speaker a language.
- Fish Fillets NG (`fillets-ng-data-cs`, `fillets-ng-data-nl`, GPL-2+): the two fish of the
  Czech and the Dutch dub (`<level>-m-*` the small fish, `<level>-v-*` the big one). Other
  characters are left out: one actor may voice several of them.

Every item's `group` is its speaker, so folds split by speaker. Clips in other containers
(GSM, Ogg Vorbis, Opus) are served as 16-bit WAV by `read_bytes`, which the decoder takes.
Byte-identical files (KTuberling's Serbian variants) are kept once.
"""

import dataclasses
import hashlib
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from pipeline.data.asterisk import _PACKAGES, _SOUND_EFFECTS, ASTERISK_ROOT, iter_asterisk
from pipeline.data.items import DataItem
from pipeline.decode.audio import MAX_SECONDS
from schemas.items import Modality

KLETTRES_ROOT = Path("/usr/share/klettres")
KTUBERLING_ROOT = Path("/usr/share/ktuberling/sounds")
FILLETS_ROOT = Path("/usr/share/games/fillets-ng/sound")
_AUDIO_SUFFIXES = frozenset({".wav", ".ogg", ".opus", ".gsm"})
# Raw GSM 6.10 has no header: Asterisk's .gsm prompts are 8 kHz mono, 33 bytes per 160 samples.
_GSM_RATE = 8000
_GSM_FRAME_BYTES, _GSM_FRAME_SAMPLES = 33, 160
# Fish Fillets file names: <level>-<character>-<line>; these two characters are the fish.
_FISH = {"m": "small", "v": "big"}


@dataclass(frozen=True)
class _Source:
    """One Debian package's voices: `label` names each voice folder's speaker."""

    package: str
    licence: str
    root: Path


# Every demo package's debian/copyright says CC-BY-SA 3.0 (Menardi's: the Italian port).
_DEMO_LICENCE = "CC-BY-SA-3.0"
_ASTERISK_EXTRA = {
    "es": _Source("asterisk-prompt-es-co", "GPL-2", ASTERISK_ROOT),
    "fr": _Source("asterisk-prompt-fr-armelle", "BSD-style (Michel Gutierrez)", ASTERISK_ROOT),
}
_ASTERISK_EXTRA_LABELS = {"es": "july-es-co", "fr": "armelle"}
_KLETTRES = _Source("klettres-data", "GPL-2+", KLETTRES_ROOT)
_KTUBERLING = _Source("ktuberling-data", "GPL-2+", KTUBERLING_ROOT)
_FILLETS = {
    "cs": _Source("fillets-ng-data-cs", "GPL-2+", FILLETS_ROOT),
    "nl": _Source("fillets-ng-data-nl", "GPL-2+", FILLETS_ROOT),
}


@dataclass(frozen=True)
class SpeakerClip(DataItem):
    """A clip whose file may be GSM, Ogg or Opus; `read_bytes` always gives WAV."""

    def read_bytes(self) -> bytes:
        if self.path.suffix == ".wav":
            return self.path.read_bytes()
        samples, rate = read_clip(self.path)
        buffer = io.BytesIO()
        sf.write(buffer, samples, rate, format="WAV", subtype="PCM_16")
        return buffer.getvalue()


def read_clip(path: Path) -> tuple[np.ndarray, int]:
    """(float32 samples, rate) of any clip this module lists, mono or (frames, channels)."""
    if path.suffix == ".gsm":
        kind = {"samplerate": _GSM_RATE, "channels": 1, "format": "RAW", "subtype": "GSM610"}
        return sf.read(str(path), dtype="float32", **kind)
    return sf.read(str(path), dtype="float32")


def iter_speakers() -> Iterator[DataItem]:
    """Every speaker clip found, grouped by speaker (group = label), demo voices first.

    Sources whose package is not installed are skipped; `missing_speaker_packages` names them.
    """
    seen: set[str] = set()
    demo = iter_asterisk() if ASTERISK_ROOT.is_dir() else iter([])
    candidates = [
        *(dataclasses.replace(item, group=item.label) for item in demo),
        *_asterisk_extra(),
        *_klettres(),
        *_ktuberling(),
        *_fillets(),
    ]
    for item in candidates:
        digest = hashlib.sha256(item.path.read_bytes()).hexdigest()
        if digest not in seen and _usable(item.path):
            seen.add(digest)
            yield item


def speaker_packages() -> dict[str, str]:
    """Debian package -> licence, for every package `iter_speakers` reads."""
    sources = [*_ASTERISK_EXTRA.values(), _KLETTRES, _KTUBERLING, *_FILLETS.values()]
    demo = {package: _DEMO_LICENCE for package in sorted(set(_PACKAGES.values()))}
    return demo | {source.package: source.licence for source in sources}


def missing_speaker_packages() -> list[str]:
    """The packages of `speaker_packages` that dpkg does not list as installed."""
    status = Path("/var/lib/dpkg/status")
    text = status.read_text(errors="replace") if status.is_file() else ""
    installed = {
        block.split("\n", 1)[0].removeprefix("Package: ")
        for block in text.split("\n\n")
        if "Status: install ok installed" in block
    }
    return sorted(set(speaker_packages()) - installed)


def _clip(speaker: str, folder: Path, path: Path) -> SpeakerClip:
    word = path.relative_to(folder).with_suffix("").as_posix()
    return SpeakerClip(
        id=f"speakers/{speaker}/{word}",
        modality=Modality.AUDIO,
        label=speaker,
        group=speaker,
        path=path,
        word=word,
    )


def _files(folder: Path, pattern: str = "*") -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob(pattern) if p.suffix in _AUDIO_SUFFIXES)


def _asterisk_extra() -> Iterator[SpeakerClip]:
    for folder_name, source in _ASTERISK_EXTRA.items():
        folder = source.root / folder_name
        speaker = _ASTERISK_EXTRA_LABELS[folder_name]
        for path in _files(folder):
            if path.stem not in _SOUND_EFFECTS:  # es-co ships beep/beeperr
                yield _clip(speaker, folder, path)


def _klettres() -> Iterator[SpeakerClip]:
    for folder in sorted(p for p in KLETTRES_ROOT.glob("*") if p.is_dir()):
        for path in _files(folder):
            yield _clip(f"klettres-{folder.name}", folder, path)


def _ktuberling() -> Iterator[SpeakerClip]:
    for folder in sorted(p for p in KTUBERLING_ROOT.glob("*") if p.is_dir()):
        for path in _files(folder):
            yield _clip(f"ktuberling-{folder.name}", folder, path)


def _fillets() -> Iterator[SpeakerClip]:
    for language in _FILLETS:
        for path in sorted(FILLETS_ROOT.glob(f"*/{language}/*.ogg")):
            parts = path.stem.split("-")
            if len(parts) >= 3 and parts[1] in _FISH:
                speaker = f"fillets-{language}-{_FISH[parts[1]]}"
                yield _clip(speaker, FILLETS_ROOT, path)


def _usable(path: Path) -> bool:
    """Not empty and within the decoder's length limit (read from the header only)."""
    if path.suffix == ".gsm":
        return path.stat().st_size > 0
    info = sf.info(str(path))
    return 0 < info.frames <= MAX_SECONDS * info.samplerate
