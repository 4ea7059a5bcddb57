"""The speech demo set: Asterisk PBX prompts read by six voices (five speakers).

The prompts come from Debian's asterisk-core-sounds-*-wav and
asterisk-prompt-it-menardi-wav packages (CC-BY-SA 3.0 / CC-BY 3.0): 8 kHz mono
PCM16, mostly 0.5-4 s. The same prompt names ("digits/7", "vm-goodbye") exist in
every voice, which gives both a speaker task (label) and a word task (group).
"""

from collections.abc import Collection, Iterator
from dataclasses import replace
from pathlib import Path

import soundfile as sf

from pipeline.data.items import DataItem
from pipeline.data.tree import tree_items
from pipeline.decode.audio import MAX_SECONDS
from schemas.items import Modality

ASTERISK_ROOT = Path("/usr/share/asterisk/sounds")
# Voice folder -> speaker label. Allison recorded both the English and the Spanish set.
VOICES: dict[str, str] = {
    "en_US_f_Allison": "allison",
    "es_MX_f_Allison": "allison",
    "fr_CA_f_June": "june",
    "it_IT_m_Carlo": "carlo",
    "it_IT_f_Menardi": "menardi",
    "ru_RU_f_IvrvoiceRU": "ivrvoiceru",
}
_PACKAGES: dict[str, str] = {
    "en_US_f_Allison": "asterisk-core-sounds-en-wav",
    "es_MX_f_Allison": "asterisk-core-sounds-es-wav",
    "fr_CA_f_June": "asterisk-core-sounds-fr-wav",
    "it_IT_m_Carlo": "asterisk-core-sounds-it-wav",
    "it_IT_f_Menardi": "asterisk-prompt-it-menardi-wav",
    "ru_RU_f_IvrvoiceRU": "asterisk-core-sounds-ru-wav",
}
# Room tone ("silence/1" .. "silence/10") and the shared sound effects: no speech,
# so no speaker. The effects are the same recording in every voice folder (features
# within 1e-3 of each other), so labelling them by speaker would teach a falsehood.
_NOT_SPEECH_FOLDER = "silence"
_SOUND_EFFECTS = frozenset(
    {
        "ascending-2tone",
        "descending-2tone",
        "beep",
        "beeperr",
        "confbridge-join",
        "confbridge-leave",
        "tt-monkeys",
    }
)


def iter_asterisk(
    root: Path = ASTERISK_ROOT, *, words: Collection[str] | None = None
) -> Iterator[DataItem]:
    """Every usable prompt as `asterisk/<voice>/<word>`, by voice folder then word.

    `words` keeps only those relative paths (e.g. a subset of `common_words`).
    """
    _require_voices(root)
    wanted = None if words is None else frozenset(words)
    for voice in sorted(VOICES):
        yield from _voice_items(root, voice, wanted)


def common_words(root: Path = ASTERISK_ROOT) -> list[str]:
    """The prompts every voice has, sorted: word pairs exist for each of them."""
    _require_voices(root)
    per_voice = [{item.word for item in _voice_items(root, voice, None)} for voice in VOICES]
    return sorted(set.intersection(*per_voice))


def _voice_items(root: Path, voice: str, words: frozenset[str] | None) -> Iterator[DataItem]:
    """One voice's usable prompts, sorted by word (the path under the voice folder)."""
    prefix = f"asterisk/{voice}/"
    for item in tree_items(Modality.AUDIO, root / voice, prefix, VOICES[voice], (".wav",)):
        word = item.id.removeprefix(prefix)
        if word.split("/", 1)[0] == _NOT_SPEECH_FOLDER or word in _SOUND_EFFECTS:
            continue
        if words is not None and word not in words:
            continue
        if _decodable(item.path):
            yield replace(item, group=word, word=word)


def _decodable(path: Path) -> bool:
    """Leave out what the audio decoder would reject anyway (one empty file, the
    minute-long demo monologues), so that streaming the demo set fills no dead letters.
    """
    info = sf.info(str(path))
    return 0 < info.frames <= MAX_SECONDS * info.samplerate


def _require_voices(root: Path) -> None:
    missing = [voice for voice in VOICES if not (root / voice).is_dir()]
    if missing:
        packages = " ".join(sorted({_PACKAGES[voice] for voice in missing}))
        raise FileNotFoundError(
            f"Asterisk voices {', '.join(missing)} not found under {root}; install them with "
            f"`sudo apt-get install --no-install-recommends {packages}`"
        )
