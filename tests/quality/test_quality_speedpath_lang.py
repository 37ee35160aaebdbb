"""Language ID fast path: accuracy of the `MAX_CHARS` cap on labelled sentences, and the Arrow path equal to the
plain one.

The sentences were written for this test (two turns of one conversation, a question and its answer, in each of 15
languages, 60–225 characters). They are what the cap in `quality/lang.py` was chosen on: every one is labelled
right from its first 128 characters and from its first 80 (the cap); from 32 one is not.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dataforge.quality import lang

LABELLED: list[tuple[str, str]] = [
    (
        "en",
        "Could you explain how a heat pump keeps a house warm in winter? I always thought it only worked "
        "as an air conditioner, and I would like to understand where the heat actually comes from when "
        "it is freezing outside.",
    ),
    (
        "en",
        "Sure. The pump moves heat rather than making it: a refrigerant absorbs warmth from the outdoor "
        "air, even at minus ten degrees, is compressed until it is hotter than the room, and then "
        "releases that heat indoors.",
    ),
    (
        "fr",
        "Pouvez-vous m'expliquer comment fonctionne une pompe à chaleur en hiver ? Je pensais qu'elle "
        "servait seulement à rafraîchir la maison pendant l'été, et je voudrais comprendre d'où vient "
        "vraiment la chaleur.",
    ),
    (
        "fr",
        "Bien sûr. La pompe ne fabrique pas la chaleur, elle la déplace : un fluide frigorigène capte "
        "l'énergie de l'air extérieur, même par grand froid, puis il est comprimé et restitue cette "
        "chaleur à l'intérieur du logement.",
    ),
    (
        "de",
        "Kannst du mir erklären, wie eine Wärmepumpe im Winter ein Haus heizt? Ich dachte immer, sie "
        "funktioniert nur als Klimaanlage, und ich möchte verstehen, woher die Wärme eigentlich kommt, "
        "wenn es draußen friert.",
    ),
    (
        "de",
        "Gern. Die Pumpe erzeugt keine Wärme, sie verschiebt sie: Ein Kältemittel nimmt Energie aus der "
        "Außenluft auf, selbst bei minus zehn Grad, wird verdichtet, bis es wärmer als der Raum ist, und "
        "gibt die Wärme drinnen ab.",
    ),
    (
        "es",
        "¿Podrías explicarme cómo una bomba de calor mantiene caliente una casa en invierno? Siempre "
        "pensé que solo funcionaba como aire acondicionado y me gustaría entender de dónde sale el calor "
        "cuando afuera hiela.",
    ),
    (
        "es",
        "Claro. La bomba no produce calor, lo traslada: un refrigerante absorbe energía del aire "
        "exterior, incluso a diez grados bajo cero, se comprime hasta estar más caliente que la "
        "habitación y luego libera ese calor dentro.",
    ),
    (
        "it",
        "Potresti spiegarmi come fa una pompa di calore a riscaldare una casa d'inverno? Ho sempre "
        "pensato che funzionasse solo come condizionatore e vorrei capire da dove arriva davvero il "
        "calore quando fuori gela.",
    ),
    (
        "it",
        "Certo. La pompa non produce calore, lo sposta: un fluido refrigerante assorbe energia dall'aria "
        "esterna, anche a dieci gradi sotto zero, viene compresso finché è più caldo della stanza e poi "
        "cede il calore all'interno.",
    ),
    (
        "pt",
        "Você pode me explicar como uma bomba de calor mantém uma casa aquecida no inverno? Eu sempre "
        "achei que ela só funcionava como ar-condicionado e gostaria de entender de onde vem o calor "
        "quando lá fora está congelando.",
    ),
    (
        "pt",
        "Claro. A bomba não produz calor, ela o transporta: um fluido refrigerante absorve energia do ar "
        "externo, mesmo a dez graus negativos, é comprimido até ficar mais quente que o ambiente e então "
        "libera esse calor dentro de casa.",
    ),
    (
        "nl",
        "Kun je uitleggen hoe een warmtepomp een huis in de winter warm houdt? Ik dacht altijd dat het "
        "alleen als airconditioning werkte, en ik wil graag begrijpen waar de warmte eigenlijk vandaan "
        "komt als het buiten vriest.",
    ),
    (
        "nl",
        "Zeker. De pomp maakt geen warmte maar verplaatst die: een koudemiddel neemt energie op uit de "
        "buitenlucht, zelfs bij min tien graden, wordt samengeperst tot het warmer is dan de kamer en "
        "geeft de warmte binnen af.",
    ),
    (
        "ru",
        "Не могли бы вы объяснить, как тепловой насос обогревает дом зимой? Я всегда думал, что он "
        "работает только как кондиционер, и хотел бы понять, откуда берётся тепло, когда на улице мороз.",
    ),
    (
        "ru",
        "Конечно. Насос не производит тепло, а переносит его: хладагент забирает энергию из наружного "
        "воздуха даже при минус десяти градусах, сжимается, становится теплее комнаты и отдаёт это тепло "
        "внутри дома.",
    ),
    (
        "pl",
        "Czy możesz wyjaśnić, jak pompa ciepła ogrzewa dom zimą? Zawsze myślałem, że działa tylko jak "
        "klimatyzator, i chciałbym zrozumieć, skąd właściwie bierze się ciepło, kiedy na zewnątrz jest "
        "mróz.",
    ),
    (
        "pl",
        "Oczywiście. Pompa nie wytwarza ciepła, tylko je przenosi: czynnik chłodniczy pobiera energię z "
        "powietrza na zewnątrz, nawet przy minus dziesięciu stopniach, jest sprężany i oddaje to ciepło "
        "wewnątrz domu.",
    ),
    (
        "zh",
        "你能解释一下热泵在冬天是怎么让房子保持温暖的吗？我一直以为它只能当空调用，想弄明白外面结冰的时候"
        "，热量到底是从哪里来的。",
    ),
    (
        "zh",
        "当然可以。热泵并不产生热量，而是搬运热量：制冷剂即使在零下十度也能从室外空气中吸收能量，经过压缩"
        "后温度高于室内，再把热量释放到房间里。",
    ),
    (
        "ja",
        "冬にヒートポンプがどうやって家を暖めるのか説明してもらえますか。ずっとエアコンとしてしか使えない"
        "と思っていたので、外が凍えるほど寒いときに熱がどこから来るのか知りたいです。",
    ),
    (
        "ja",
        "もちろんです。ヒートポンプは熱を作るのではなく運びます。冷媒は氷点下十度でも外気から熱を吸収し、"
        "圧縮されて室温より高くなると、その熱を室内に放出します。",
    ),
    (
        "ar",
        "هل يمكنك أن تشرح لي كيف تحافظ المضخة الحرارية على دفء المنزل في الشتاء؟ كنت أظن دائما أنها تعمل "
        "كمكيف هواء فقط، وأود أن أفهم من أين تأتي الحرارة عندما يكون الجو متجمدا في الخارج.",
    ),
    (
        "ar",
        "بالتأكيد. المضخة لا تنتج الحرارة بل تنقلها: يمتص سائل التبريد الطاقة من الهواء الخارجي حتى عند "
        "عشر درجات تحت الصفر، ثم يضغط حتى يصبح أدفأ من الغرفة ويطلق تلك الحرارة داخل المنزل.",
    ),
    (
        "tr",
        "Bir ısı pompasının kışın evi nasıl sıcak tuttuğunu açıklayabilir misin? Hep sadece klima gibi "
        "çalıştığını düşünürdüm ve dışarısı donarken ısının aslında nereden geldiğini anlamak istiyorum.",
    ),
    (
        "tr",
        "Elbette. Pompa ısı üretmez, ısıyı taşır: soğutucu akışkan eksi on derecede bile dış havadan "
        "enerji alır, sıkıştırılarak odadan daha sıcak hale gelir ve bu ısıyı evin içine verir.",
    ),
    (
        "sv",
        "Kan du förklara hur en värmepump håller ett hus varmt på vintern? Jag har alltid trott att den "
        "bara fungerar som luftkonditionering, och jag vill förstå var värmen egentligen kommer ifrån "
        "när det fryser ute.",
    ),
    (
        "sv",
        "Visst. Pumpen skapar ingen värme utan flyttar den: ett köldmedium tar upp energi från "
        "uteluften, även vid minus tio grader, komprimeras tills det är varmare än rummet och avger "
        "sedan värmen inomhus.",
    ),
    (
        "ko",
        "겨울에 히트펌프가 어떻게 집을 따뜻하게 유지하는지 설명해 주실 수 있나요? 저는 늘 에어컨으로만 "
        "쓰이는 줄 알았는데, 밖이 얼어붙을 때 열이 도대체 어디서 오는지 알고 싶어요.",
    ),
    (
        "ko",
        "물론이죠. 히트펌프는 열을 만드는 것이 아니라 옮깁니다. 냉매가 영하 10도에서도 바깥 공기에서 "
        "에너지를 흡수하고, 압축되어 방보다 뜨거워지면 그 열을 실내로 내보냅니다.",
    ),
]


def _accuracy(max_chars: int, monkeypatch: pytest.MonkeyPatch) -> float:
    monkeypatch.setattr(lang, "MAX_CHARS", max_chars)
    got, _ = lang.detect([text for _, text in LABELLED])
    return sum(g == want for g, (want, _) in zip(got, LABELLED, strict=True)) / len(LABELLED)


def test_every_labelled_sentence_is_right_at_the_cap() -> None:
    langs, scores = lang.detect_array(pa.array([text for _, text in LABELLED]))
    assert langs.to_pylist() == [want for want, _ in LABELLED]
    assert min(scores.to_pylist()) > 0.3


@pytest.mark.parametrize(("max_chars", "accuracy"), [(128, 1.0), (80, 1.0), (48, 1.0), (32, 29 / 30), (16, 25 / 30)])
def test_accuracy_by_cap_as_measured_when_the_cap_was_chosen(
    max_chars: int, accuracy: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert lang.MAX_CHARS == 80
    assert _accuracy(max_chars, monkeypatch) == accuracy


def test_the_arrow_path_equals_the_list_path_on_awkward_texts() -> None:
    texts = [
        None,
        "",
        " \n\t ",
        "héllo wörld " * 20,  # multi-byte characters across the cut
        "The weather is lovely today.",
        "The weather is lovely today.",  # a repeat is predicted once and labelled alike
        "a\u2003b\u00a0c\x1cd\x85e\u2028f " * 10,  # Unicode spaces that Python's split() knows
        "今天天气很好，我们去公园散步吧。" * 10,
    ]
    want_langs, want_scores = lang.detect(texts)
    chunked = pa.chunked_array([pa.array(texts[:3], pa.string()), pa.array(texts[3:], pa.string())])
    for column in (pa.array(texts, pa.string()), chunked, pa.array(["x"] + texts, pa.string()).slice(1)):
        langs, scores = lang.detect_array(column)
        assert langs.type == pa.string() and scores.type == pa.float32()
        assert langs.to_pylist() == want_langs
        assert np.array_equal(scores.to_numpy(zero_copy_only=False), want_scores, equal_nan=True)
    assert want_langs[:3] == [None, None, None] and want_langs[4] == want_langs[5] == "en"


_pieces = st.sampled_from(
    ["the", "weather", "é", "今天", "ß", " ", "  ", "\n", "\t", "\u2003", "\xa0", "\x85", ",", "1"]
)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.none(), st.lists(_pieces, max_size=60).map("".join)), min_size=1, max_size=8))
def test_the_arrow_cut_is_the_python_cut(texts: list[str | None]) -> None:
    langs, scores = lang.detect_array(pa.array(texts, pa.string()))
    want_langs, want_scores = lang.detect(texts)
    assert langs.to_pylist() == want_langs
    assert np.array_equal(scores.to_numpy(zero_copy_only=False), want_scores, equal_nan=True)
