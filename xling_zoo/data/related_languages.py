"""Which languages are closely related to a language: what ``transfer --mix_related=auto`` mixes in.

Similar-language regularisation (Neubig & Hu 2018) trains a low-resource child beside a related
language with more data. ``RELATED`` lists, for each language, its closest relatives, closest first,
by genealogy (Glottolog's subgroups): first the languages of its own branch (Czech: Slovak, then
Polish, West Slavic), never only the family (Finnish has Estonian, not Hungarian). A regional or
register variant (``pt_br``, ``de_at``, ``nl_informal``) is closest to its base language, then to
the base's relatives. Codes are those of the built-in corpus (ISO 639-1 where there is one).
"""

RELATED = {
    # Slavic: West, East, South (Western South Slavic, then Eastern South Slavic).
    "cs": ("sk", "pl"), "sk": ("cs", "pl"), "pl": ("cs", "sk"),
    "ru": ("uk", "be"), "uk": ("ru", "be"), "be": ("uk", "ru"),
    "hr": ("bs", "sr", "sl"), "bs": ("hr", "sr", "sl"), "sr": ("hr", "bs", "sl"), "sl": ("hr", "bs", "sr"),
    "bg": ("mk",), "mk": ("bg",),
    # Germanic: North, then West.
    "sv": ("da", "nb", "nn"), "da": ("nb", "sv", "nn"), "nb": ("da", "nn", "sv"), "nn": ("nb", "sv", "da"),
    "no": ("nb", "nn", "da", "sv"), "is": ("fo", "nn", "nb"), "fo": ("is", "nn"),
    "de": ("lb", "nl"), "lb": ("de",), "nl": ("af", "de"), "af": ("nl",), "fy": ("nl",),
    # Romance.
    "es": ("gl", "pt", "ca", "it"), "pt": ("gl", "es"), "gl": ("pt", "es"), "ca": ("oc", "es", "fr"),
    "oc": ("ca", "fr"), "fr": ("oc", "ca", "it"), "it": ("es", "ca"), "ro": ("it",),
    # Baltic, Finnic, Celtic.
    "lt": ("lv",), "lv": ("lt",), "fi": ("et",), "et": ("fi",),
    "ga": ("gd", "cy"), "gd": ("ga",), "cy": ("br", "ga"), "br": ("cy",),
    # Indo-Aryan, Iranian, Dravidian.
    "hi": ("ur", "bn"), "ur": ("hi",), "bn": ("as", "hi"), "as": ("bn",),
    "fa": ("tg",), "tg": ("fa",),
    "ta": ("ml", "kn", "te"), "ml": ("ta",), "kn": ("ta", "ml", "te"), "te": ("kn", "ta"),
    # Turkic, Semitic, Malayic, Sinitic scripts.
    "tr": ("az",), "az": ("tr",), "ba": ("tt", "kk"), "tt": ("ba", "kk"), "kk": ("ky", "tt"), "ky": ("kk",),
    "ar": ("mt", "he"), "he": ("ar",), "mt": ("ar",),
    "id": ("ms",), "ms": ("id",),
    "zh_hans": ("zh_hant", "zh_hk"), "zh_hant": ("zh_hk", "zh_hans"), "zh_hk": ("zh_hant", "zh_hans"),
}


def closest_relatives(language):
    """``language``'s related languages, closest first (empty for one the table does not know)."""
    if language in RELATED:
        return RELATED[language]
    base = language.split("_")[0]
    if base == language:
        return ()
    return tuple(dict.fromkeys((base, *RELATED.get(base, ()))))
