# ruff: noqa: RUF001 - sentences in 48 scripts
"""The languages aigw speaks, which embedded engine speaks each, and the sentence each was measured with.

Engine per language, measured (`python bench/speech.py --part languages`: each sample sentence synthesised,
transcribed back by Whisper base told the language, character error rate after both are romanised): Piper for
English; Kokoro where its Japanese-trained styles stay intelligible with espeak-ng phonemes; espeak-ng for the
rest. A language is listed only if that error rate is at most 0.45; espeak-ng's Mandarin (it reads Chinese
characters as tone digits), Japanese (kanji as "Chinese letter"), Arabic, Hebrew and Armenian were not
intelligible, so they are not listed. README.md has the figures.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Language:
    name: str
    engine: str  # "piper", "kokoro" or "espeak"
    espeak: str  # espeak-ng's voice for it
    sample: str  # a sentence in it, for previews and the measurement


LANGUAGES: dict[str, Language] = {
    "en": Language("English", "piper", "en-us", "The weather is nice today, so we are going to walk in the park."),
    "es": Language("Spanish", "kokoro", "es", "Hoy hace buen tiempo, así que vamos a caminar por el parque."),
    "fr": Language("French", "kokoro", "fr-fr", "Il fait beau aujourd'hui, alors nous allons marcher dans le parc."),
    "it": Language("Italian", "kokoro", "it", "Oggi fa bel tempo, quindi andiamo a camminare nel parco."),
    "pt": Language("Portuguese", "kokoro", "pt-br", "Hoje o tempo está bom, então vamos caminhar no parque."),
    "de": Language("German", "kokoro", "de", "Heute ist schönes Wetter, also gehen wir im Park spazieren."),
    "nl": Language("Dutch", "kokoro", "nl", "Vandaag is het mooi weer, dus we gaan wandelen in het park."),
    "ru": Language("Russian", "kokoro", "ru", "Сегодня хорошая погода, поэтому мы пойдём гулять в парк."),
    "tr": Language("Turkish", "kokoro", "tr", "Bugün hava çok güzel, bu yüzden parkta yürüyüş yapacağız."),
    "hu": Language("Hungarian", "kokoro", "hu", "Ma szép idő van, ezért sétálni megyünk a parkba."),
    "ro": Language("Romanian", "kokoro", "ro", "Astăzi vremea este frumoasă, așa că mergem să ne plimbăm în parc."),
    "uk": Language("Ukrainian", "kokoro", "uk", "Сьогодні гарна погода, тому ми підемо гуляти в парк."),
    "id": Language("Indonesian", "kokoro", "id", "Hari ini cuacanya cerah, jadi kami akan berjalan di taman."),
    "no": Language("Norwegian", "kokoro", "nb", "I dag er det fint vær, så vi skal gå en tur i parken."),
    "ca": Language("Catalan", "kokoro", "ca", "Avui fa bon temps, així que anirem a passejar pel parc."),
    "bg": Language("Bulgarian", "kokoro", "bg", "Днес времето е хубаво, затова ще се разходим в парка."),
    "pl": Language("Polish", "espeak", "pl", "Dzisiaj jest ładna pogoda, więc idziemy na spacer do parku."),
    "cs": Language("Czech", "espeak", "cs", "Dnes je hezké počasí, takže se půjdeme projít do parku."),
    "sk": Language("Slovak", "espeak", "sk", "Dnes je pekné počasie, takže sa pôjdeme prejsť do parku."),
    "sv": Language("Swedish", "espeak", "sv", "Idag är det fint väder, så vi ska gå en promenad i parken."),
    "da": Language("Danish", "espeak", "da", "I dag er det godt vejr, så vi skal gå en tur i parken."),
    "fi": Language("Finnish", "espeak", "fi", "Tänään on kaunis sää, joten menemme kävelemään puistoon."),
    "el": Language("Greek", "espeak", "el", "Σήμερα ο καιρός είναι ωραίος, οπότε θα περπατήσουμε στο πάρκο."),
    "hr": Language("Croatian", "espeak", "hr", "Danas je lijepo vrijeme, pa ćemo šetati u parku."),
    "sr": Language("Serbian", "espeak", "sr", "Danas je lepo vreme, pa ćemo šetati u parku."),
    "sl": Language("Slovenian", "espeak", "sl", "Danes je lepo vreme, zato gremo na sprehod v park."),
    "lt": Language("Lithuanian", "espeak", "lt", "Šiandien graži diena, todėl eisime pasivaikščioti į parką."),
    "lv": Language("Latvian", "espeak", "lv", "Šodien ir jauks laiks, tāpēc mēs iesim pastaigāties parkā."),
    "et": Language("Estonian", "espeak", "et", "Täna on ilus ilm, nii et me läheme parki jalutama."),
    "ms": Language("Malay", "espeak", "ms", "Hari ini cuaca baik, jadi kami akan berjalan di taman."),
    "vi": Language("Vietnamese", "espeak", "vi", "Hôm nay trời đẹp, vì vậy chúng tôi sẽ đi dạo trong công viên."),
    "ko": Language("Korean", "espeak", "ko", "오늘은 날씨가 좋아서 공원에 산책하러 갑니다."),
    "hi": Language("Hindi", "espeak", "hi", "आज मौसम अच्छा है, इसलिए हम पार्क में टहलने जाएंगे।"),
    "bn": Language("Bengali", "espeak", "bn", "আজ আবহাওয়া ভালো, তাই আমরা পার্কে হাঁটতে যাব।"),
    "ta": Language("Tamil", "espeak", "ta", "இன்று வானிலை நன்றாக உள்ளது, எனவே நாங்கள் பூங்காவில் நடக்கப் போகிறோம்."),
    "fa": Language("Persian", "espeak", "fa", "امروز هوا خوب است، پس ما به پارک می‌رویم."),
    "sw": Language("Swahili", "espeak", "sw", "Leo hali ya hewa ni nzuri, kwa hiyo tutatembea katika bustani."),
    "af": Language("Afrikaans", "espeak", "af", "Vandag is die weer mooi, so ons gaan in die park stap."),
    "cy": Language("Welsh", "espeak", "cy", "Mae'r tywydd yn braf heddiw, felly rydyn ni'n mynd am dro yn y parc."),
    "is": Language("Icelandic", "espeak", "is", "Í dag er gott veður, svo við ætlum að ganga í garðinum."),
    "mk": Language("Macedonian", "espeak", "mk", "Денес времето е убаво, па ќе прошетаме во паркот."),
    "ka": Language("Georgian", "espeak", "ka", "დღეს კარგი ამინდია, ამიტომ პარკში გავისეირნებთ."),
    "eu": Language("Basque", "espeak", "eu", "Gaur eguraldi ona dago, beraz parkean paseatzera joango gara."),
}


def espeak_voices() -> dict[str, str]:
    return {code: language.espeak for code, language in LANGUAGES.items()}
