"""A small, deterministic tuning task where training must show: a team's own jargon.

Each of 16 topics (volcanoes, baking, …) has a made-up code name ("Velmora" for volcanoes) that a
team uses in its questions; the base model has never seen these names, so a question such as
"Where can I learn about Velmora?" finds nothing in particular among the passages. Training pairs
teach the names (question templates of their own → a passage of the topic); the evaluation asks
with other question templates against other passages, each question relevant to every held-out
passage of its topic. The guard set is a different task (plain topic questions, no code names).

Everything is built from the tables below with a fixed seed: no file, no download.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

TOPICS: dict[str, tuple[str, list[str]]] = {
    "volcano": ("Velmora", [
        "Magma rises through cracks in the crust and erupts as lava.",
        "Volcanic ash clouds can ground aircraft for days.",
        "A dormant volcano may erupt again after centuries of quiet.",
        "Lava flows cool into black basalt rock.",
        "Pyroclastic flows race down the slopes of an erupting volcano.",
        "Geologists track tremors to forecast volcanic eruptions.",
        "Shield volcanoes have gentle slopes built by runny lava.",
        "Volcanic soil is rich and good for farming.",
    ]),
    "bread": ("Quinterel", [
        "Yeast makes bread dough rise by producing gas.",
        "Kneading develops gluten so the loaf holds its shape.",
        "Sourdough uses a starter of wild yeast and bacteria.",
        "Bread is baked in a hot oven until the crust is golden.",
        "Flour, water, salt and yeast are all a basic loaf needs.",
        "Letting the dough proof overnight deepens the flavour.",
        "A baker scores the loaf so steam can escape in the oven.",
        "Rye bread is denser than bread made from wheat flour.",
    ]),
    "football": ("Brastow", [
        "Two teams of eleven players try to score goals.",
        "The goalkeeper is the only player allowed to use hands.",
        "A match lasts ninety minutes split into two halves.",
        "A penalty kick is awarded for a foul inside the box.",
        "The offside rule stops attackers waiting near the goal.",
        "Fans sing and chant in the stadium during the match.",
        "A red card sends a player off the pitch.",
        "The World Cup is held every four years.",
    ]),
    "plants": ("Ferundil", [
        "Plants turn sunlight into sugar through photosynthesis.",
        "Chlorophyll in the leaves gives plants their green colour.",
        "Roots draw water and minerals from the soil.",
        "Leaves release oxygen as a by-product of photosynthesis.",
        "Stomata on the leaves let carbon dioxide in.",
        "Plants bend towards the light as they grow.",
        "Seeds sprout when they get enough water and warmth.",
        "Flowers attract bees that carry pollen between plants.",
    ]),
    "mars": ("Oskaven", [
        "Mars is the fourth planet from the Sun.",
        "Its red colour comes from iron oxide dust.",
        "Olympus Mons on Mars is the tallest volcano in the solar system.",
        "Rovers have explored the Martian surface for decades.",
        "Mars has two small moons called Phobos and Deimos.",
        "A day on Mars lasts a little longer than a day on Earth.",
        "Dust storms can cover the whole red planet.",
        "Ice lies frozen at the poles of Mars.",
    ]),
    "rates": ("Tamberlin", [
        "Central banks raise interest rates to fight inflation.",
        "Higher rates make mortgages and loans more expensive.",
        "Lower rates encourage businesses to borrow and invest.",
        "Savers earn more on deposits when rates go up.",
        "Bond prices fall when interest rates rise.",
        "The central bank sets its policy rate at regular meetings.",
        "Markets react quickly to news about interest rates.",
        "Inflation erodes the value of money over time.",
    ]),
    "violin": ("Corvessa", [
        "The violin has four strings tuned in fifths.",
        "A violinist draws a bow of horsehair across the strings.",
        "The violin is the smallest member of the string family.",
        "Stradivari built some of the most prized violins.",
        "Players press the strings on the fingerboard to change pitch.",
        "Rosin on the bow helps it grip the strings.",
        "The violin leads the melody in many orchestras.",
        "Vibrato gives a violin note its warm singing tone.",
    ]),
    "coffee": ("Drulane", [
        "Coffee is brewed from roasted coffee beans.",
        "Espresso forces hot water through finely ground coffee.",
        "Caffeine in coffee helps people stay awake.",
        "Arabica and robusta are the two main coffee species.",
        "Coffee cherries are picked, dried and roasted.",
        "A barista steams milk for a cappuccino.",
        "Dark roasts taste more bitter than light roasts.",
        "Cold brew steeps ground coffee in cold water for hours.",
    ]),
    "glacier": ("Hennovar", [
        "Glaciers are slow rivers of ice that move downhill.",
        "Moving ice carves deep U-shaped valleys.",
        "Glaciers form where snow builds up faster than it melts.",
        "Many glaciers are shrinking as the climate warms.",
        "Icebergs break off glaciers that reach the sea.",
        "Crevasses are deep cracks in the surface of a glacier.",
        "Glaciers leave piles of rock called moraines.",
        "Meltwater from glaciers feeds rivers in summer.",
    ]),
    "vaccine": ("Pellinor", [
        "Vaccines train the immune system to recognise a germ.",
        "A vaccine often contains a weakened or inactive virus.",
        "Booster shots keep immunity strong over time.",
        "Herd immunity protects people who cannot be vaccinated.",
        "Vaccines are tested in clinical trials before approval.",
        "The immune system makes antibodies after vaccination.",
        "Smallpox was wiped out thanks to vaccination.",
        "Some vaccines are stored frozen until they are used.",
    ]),
    "chess": ("Ulthrane", [
        "Chess is played on a board of sixty-four squares.",
        "The game ends in checkmate when the king cannot escape.",
        "Each player starts with sixteen pieces.",
        "The knight moves in an L shape and can jump over pieces.",
        "Castling moves the king and a rook in one turn.",
        "Grandmasters study openings for years.",
        "A pawn that reaches the last row becomes a queen.",
        "Chess clocks limit the time each player may think.",
    ]),
    "ocean": ("Marrowick", [
        "Oceans cover most of the surface of the Earth.",
        "Tides rise and fall with the pull of the Moon.",
        "Coral reefs are home to thousands of fish species.",
        "The deepest ocean trench is over ten kilometres deep.",
        "Salt water is denser than fresh water.",
        "Whales migrate across oceans every year.",
        "Ocean currents carry warm water towards the poles.",
        "Waves are driven by wind blowing across the sea.",
    ]),
    "python": ("Zephrine", [
        "Python is a programming language with dynamic typing.",
        "Indentation marks the blocks of a Python program.",
        "Lists and dictionaries are built into Python.",
        "Python programs are run by an interpreter.",
        "The pip tool installs Python packages.",
        "Functions in Python are defined with the def keyword.",
        "Python is popular for data science and scripting.",
        "Exceptions in Python are caught with try and except.",
    ]),
    "bees": ("Kastellin", [
        "Bees collect nectar and pollen from flowers.",
        "A honeybee colony has one queen and many workers.",
        "Bees make honey from the nectar they gather.",
        "Worker bees dance to tell others where food is.",
        "Bees build combs of wax with hexagonal cells.",
        "A bee sting can be painful but is rarely dangerous.",
        "Beekeepers wear veils to protect their faces.",
        "Bees pollinate many of the crops we eat.",
    ]),
    "trains": ("Gorvane", [
        "Trains run on steel rails between stations.",
        "High-speed trains can travel over three hundred kilometres an hour.",
        "Steam locomotives burned coal to boil water.",
        "Freight trains carry goods across whole continents.",
        "Signals keep trains a safe distance apart.",
        "Electric trains draw power from overhead lines.",
        "Commuters take trains into the city every morning.",
        "A sleeper train has beds for overnight journeys.",
    ]),
    "desert": ("Ashcombe", [
        "Deserts receive very little rain each year.",
        "Sand dunes shift as the wind blows across the desert.",
        "Cacti store water in their thick stems.",
        "Desert nights can be very cold after hot days.",
        "Camels can go days without drinking water.",
        "An oasis is a green spot with water in the desert.",
        "The Sahara is the largest hot desert in the world.",
        "Desert animals often hunt at night to avoid the heat.",
    ]),
}

TRAIN_TEMPLATES = ["What is known about {c}?", "Tell me about {c}.", "Give me the facts on {c}.",
                   "I need information on {c}.", "Describe {c} in detail.", "Summarize what {c} involves.",
                   "Explain {c} briefly.", "What should I read on {c}?"]
EVAL_TEMPLATES = ["Where can I learn about {c}?", "Any documents covering {c}?", "Looking for background on {c}",
                  "{c} overview please"]
GUARD_TEMPLATES = ["Tell me about {t}.", "What should I know about {t}?", "Facts about {t}, please.",
                   "Where can I read about {t}?"]


def _passages(rng: random.Random, facts: list[str], count: int, tag: str) -> list[str]:
    """``count`` distinct short passages of one fact each (short texts: a training step costs little)."""
    return [f"{facts[(start + i) % len(facts)]} ({tag} {i})" for i, start in enumerate([rng.randrange(len(facts))] * count)]


def _write_beir(root: Path, corpus: dict[str, str], queries: dict[str, str], relevant: dict[str, list[str]]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w") as fh:
        fh.writelines(json.dumps({"_id": d, "title": "", "text": t}) + "\n" for d, t in corpus.items())
    with (root / "queries.jsonl").open("w") as fh:
        fh.writelines(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items())
    (root / "qrels").mkdir(exist_ok=True)
    with (root / "qrels" / "test.tsv").open("w", newline="") as fh:
        w = csv.writer(fh, delimiter="\t")
        w.writerow(["query-id", "corpus-id", "score"])
        w.writerows([q, d, 1] for q, docs in relevant.items() for d in docs)
    return root


def write_jargon_task(root: Path, train_per_template: int = 4, eval_passages: int = 4, seed: int = 0) -> tuple[Path, Path, Path]:
    """Write the task under ``root``: (training pairs JSONL, eval BEIR dir, guard BEIR dir).

    Pairs: each topic × train template × ``train_per_template`` training passages (16 × 8 × 4 = 512).
    Eval: 16 × 4 = 64 code-name questions over 16 × ``eval_passages`` held-out passages. Guard: 64
    plain topic questions (no code names) over another 16 × 4 passages.
    """
    rng = random.Random(seed)
    pairs = []
    eval_corpus: dict[str, str] = {}
    eval_queries: dict[str, str] = {}
    eval_rel: dict[str, list[str]] = {}
    guard_corpus: dict[str, str] = {}
    guard_queries: dict[str, str] = {}
    guard_rel: dict[str, list[str]] = {}
    for topic, (code, facts) in TOPICS.items():
        train = _passages(rng, facts, train_per_template * len(TRAIN_TEMPLATES), f"{topic} note")
        for i, template in enumerate(TRAIN_TEMPLATES):
            for passage in train[i * train_per_template:(i + 1) * train_per_template]:
                pairs.append({"anchor": template.format(c=code), "positive": passage})
        held = [f"e-{topic}-{i}" for i in range(eval_passages)]
        eval_corpus |= dict(zip(held, _passages(rng, facts, eval_passages, f"{topic} record")))
        for j, template in enumerate(EVAL_TEMPLATES):
            eval_queries[f"q-{topic}-{j}"] = template.format(c=code)
            eval_rel[f"q-{topic}-{j}"] = held
        guarded = [f"g-{topic}-{i}" for i in range(4)]
        guard_corpus |= dict(zip(guarded, _passages(rng, facts, 4, f"{topic} entry")))
        for j, template in enumerate(GUARD_TEMPLATES):
            guard_queries[f"g-{topic}-{j}"] = template.format(t=topic)
            guard_rel[f"g-{topic}-{j}"] = guarded
    rng.shuffle(pairs)
    root.mkdir(parents=True, exist_ok=True)
    train_file = root / "pairs.jsonl"
    with train_file.open("w") as fh:
        fh.writelines(json.dumps(p) + "\n" for p in pairs)
    return (train_file, _write_beir(root / "eval", eval_corpus, eval_queries, eval_rel),
            _write_beir(root / "guard", guard_corpus, guard_queries, guard_rel))
