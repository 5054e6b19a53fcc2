#!/usr/bin/env python3
"""gen_corpus.py: writes data/corpus.txt, the training text for helium-mkmodel's BPE.

The corpus is a few hand-written paragraphs followed by generated prose: sentences
composed (with a fixed seed) from the word lists below, with regular morphology
(plurals, -s/-ed/-ing, -ly, -ness, un-/re-) and invented product, brand and street
names so that byte-level BPE finds well over 8,000 distinct subwords. All of the
text here is original. The output is deterministic for a given --seed; the
generated corpus.txt is committed, so the C generator never runs Python.

Usage: gen_corpus.py [--seed N] [--kbytes K] [-o FILE]   (default: <repo>/data/corpus.txt)
"""
import argparse
import os
import random

HAND_PROSE = """\
The store opens at eight, but the work starts long before the lights come on. Mara
unlocks the loading door at six fifteen, checks the overnight deliveries against the
manifest, and writes the missing cartons on the whiteboard by the break room. Most
mornings nothing is missing. When something is, she calls the carrier before the
coffee machine has finished warming up, because a missing pallet found at noon is a
problem, and a missing pallet found at six is just a phone call.

A good customer service agent listens first. "I ordered the blue kettle, and the box
had a green one in it," the caller said. The agent didn't argue about colors. She
looked up order 48213, saw that the warehouse had substituted the item without a note,
apologized, and offered two choices: keep the green kettle with a ten percent refund,
or return it with a prepaid label. The caller kept the kettle. Sometimes the fastest
fix is the one that lets people decide for themselves.

Weather changes everything in retail. A sudden cold snap empties the shelves of
gloves, soup and firewood in a single afternoon; a warm weekend in March sells more
patio chairs than the whole of the previous autumn. The forecast for Thursday calls
for light rain in the morning, clearing by midday, with a high of 14 degrees and a
breeze from the northwest. Stock the umbrellas near the entrance anyway.

To make the soup, soften two chopped onions in butter over low heat for ten minutes.
Add three diced carrots, a stick of celery, a crushed clove of garlic and a pinch of
salt. Pour in a litre of stock, simmer until the carrots are tender, then blend until
smooth. Season with pepper, a squeeze of lemon and a spoonful of cream. It keeps for
three days in the fridge and tastes better on the second.

Our train left Zürich at 07:32 and reached München a little after noon. In the dining
car a waiter poured café crème into thick white cups while the hills rolled past,
still dusted with snow. The plan was naïve, perhaps: two days in each city, no hotel
bookings, one small bag each. It worked anyway. In Kraków we found a room above a
bakery; in Malmö the hostel had a sauna and a cat named Sixten.

The scheduling service keeps a queue of jobs for every worker. When a request arrives,
the coordinator looks at which worker already holds the longest matching prefix in its
cache and sends the request there, unless that worker is overloaded. Agents that call
the model many times in a row benefit the most: the system prompt, the tool list and
the conversation so far are already cached, so only the newest turn needs to be
processed. The latency drops from seconds to a few hundred milliseconds.

Returns policy, version 3.2: items may be returned within 30 days of delivery with a
receipt. Opened electronics are accepted within 14 days if all accessories are
included. Gift cards, perishable food and personalized items can't be returned. Refunds
go back to the original payment method within 5 to 7 business days. If you've lost the
receipt, we'll look up the purchase by card number or loyalty account.

She'd never been to 東京 before, and the first thing she noticed was how quiet the
trains were. Nobody talked on the phone. The ticket machines spoke English if you asked
them to, and the convenience store by the station sold rice balls, umbrellas, socks and
concert tickets from the same counter. ありがとう, she said to the cashier, and he smiled
at her accent.

Inventory counts never match the system exactly. Shrink, damage, mis-scans and items
that customers hide behind other products all add up. The trick is to count the
high-value aisles weekly and the rest monthly, to investigate any variance above two
percent, and to fix the process rather than blame the people. A scanner that double
counts when the battery is low is a process problem, not a staff problem.

The espresso machine hissed. "Two flat whites, one oat milk, and a croissant, please,"
said the man in the grey coat. The barista nodded, tamped the grounds, and started the
shot. Behind the counter a handwritten sign read: Card only after 3 pm ☕. Outside, the
delivery van was double parked again, hazard lights blinking, the driver stacking boxes
onto a trolley 📦 as fast as he could.

Debugging a slow service usually starts with a question nobody wants to answer: is it
actually slow, or does it just feel slow? Measure first. Record the time each request
spends waiting, running and sending its reply. Nine times out of ten, the wait is the
problem, and the wait is caused by one long request blocking many short ones. Split the
long work into smaller pieces, or give the short requests their own lane.

"Where's my order?" is the most common question we get. The honest answer is usually
"on a truck somewhere between the warehouse and you," which doesn't help anyone. So
the assistant now checks the tracking number, reads the latest scan, and explains it in
plain words: it left the Leeds depot last night, it's due tomorrow before six, and if
it isn't there by Friday we'll send a replacement without asking any more questions.
"""

# ---------------------------------------------------------------- word lists
NOUNS = """
store shop aisle shelf counter register receipt invoice order delivery parcel package
box carton pallet warehouse depot truck van driver courier customer client shopper
cashier manager supervisor clerk agent assistant associate staff team shift schedule
rota break lunch meeting report ledger budget forecast price discount coupon voucher
refund return exchange warranty guarantee complaint question answer request ticket
queue line window door entrance exit sign label barcode scanner printer screen tablet
phone laptop keyboard mouse monitor cable charger battery adapter speaker headset
camera lens tripod kettle toaster blender mixer oven stove fridge freezer dishwasher
kitchen pantry spoon fork knife plate bowl cup mug glass bottle jar lid pan pot tray
towel blanket pillow sheet curtain lamp bulb chair table desk sofa bench stool rug
carpet mirror frame vase candle basket bag backpack suitcase wallet umbrella jacket
coat scarf glove hat boot shoe sock shirt sweater dress skirt trouser belt button
zipper thread needle fabric cotton wool leather silk denim linen ribbon sticker
notebook pencil pen marker eraser envelope stamp letter card calendar clock watch
alarm garden hose rake shovel bucket seed plant flower tree branch leaf root soil
bread butter cheese milk cream yogurt egg flour sugar salt pepper spice herb garlic
onion carrot potato tomato lettuce cabbage pepper mushroom apple banana orange lemon
lime cherry grape melon peach pear plum berry nut almond walnut raisin honey jam
soup stew sauce salad sandwich pizza pasta noodle rice bean lentil pie cake cookie
biscuit muffin croissant bagel pancake waffle coffee tea juice water soda recipe
ingredient portion serving flavor texture aroma weather forecast rain drizzle shower
storm thunder lightning cloud fog mist wind breeze gust snow sleet hail frost ice
sunshine heat humidity temperature degree morning afternoon evening night midnight
weekend holiday season spring summer autumn winter month week day hour minute second
city town village street road avenue lane bridge tunnel station platform train tram
bus ferry boat ship plane airport terminal gate runway flight passenger ticket seat
luggage passport visa hotel hostel room key lobby reception booking reservation map
guide tour museum gallery castle cathedral market square park beach harbor island
mountain valley river lake forest desert coast cliff trail path journey trip route
server client network router switch packet request response latency throughput cache
memory disk file folder database table index query record field column row schema
model token prompt context layer weight tensor kernel thread process job task worker
coordinator scheduler cluster node replica shard partition log metric dashboard alert
incident outage deploy release version patch bug fix feature test build pipeline
script function variable loop branch commit merge review document page section
chapter paragraph sentence word phrase sentence summary draft note message email
policy contract invoice payment account balance loan interest saving budget tax fee
company business market brand product service quality safety security privacy
"""

NOUNS_MORE = """
achievement adjustment advertisement agreement allowance ambition amendment analysis
announcement appetite appliance appointment approach architecture argument arrangement
assessment assignment atmosphere attachment attendance attention attitude audience
authority automation availability awareness background balcony bandwidth bargain
barrier behavior benchmark bicycle billboard birthday blueprint boundary bracelet
breakfast brochure buffer bulletin bundle cabinet calculation campaign candidate
capacity caravan carriage catalogue category ceremony certificate challenge champion
channel character checkout chemistry chimney circumstance citizen collection collision
combination comfort commission committee communication community comparison competition
component composition compromise computation concept conclusion condition conference
confidence configuration confusion connection consequence construction consultant
consumer container contribution convenience conversation cooperation corridor costume
cottage counterpart creativity credential criticism crossroad cupboard curiosity
currency curriculum cushion customization decision declaration decoration definition
delegation demonstration department departure dependency deposit description
destination detection development device diagnosis difference dimension direction
disappointment discipline discount discovery discussion display distance distribution
district diversity documentation domain donation download efficiency election
electricity element elevator emergency emotion emphasis employee employer encounter
endpoint engagement engine engineer enterprise enthusiasm environment equipment
estimate evaluation evidence examination excitement exhibition expectation expedition
experience experiment expertise explanation exposure expression extension facility
failure familiarity fashion fountain framework frequency friendship furniture gadget
generation geography gesture government gradient greenhouse guarantee guidance
handbook hardware headline headquarters highway homework horizon hospitality household
hypothesis identity illustration imagination implementation importance impression
improvement incentive income independence indicator industry infrastructure
inheritance initiative injection innovation inspection installation instance
instruction instrument insurance integration intelligence intention interaction
interface interpretation interruption interval interview introduction invention
investment invitation itinerary jewelry journalist judgment junction justification
keyword knowledge laboratory landscape language laundry leadership legislation
library license lifestyle limitation literature location locomotive machinery
magazine maintenance majority management manufacturer margin marathon membership
mentor microphone migration milestone mineral minority mission mixture moderation
momentum motivation motorway multiplication navigation necessity negotiation
neighborhood newsletter notification nutrition objective obligation observation
occasion occupation operation opinion opportunity optimization orchestra organization
orientation outcome overview ownership painting pamphlet parameter participant
partnership passenger pattern pavement payroll penalty percentage perception
performance permission personality perspective phenomenon philosophy photograph
placement playground pleasure pocket popularity population portfolio possibility
potential poverty precision preference preparation presence presentation pressure
prevention principle priority probability procedure production profession profile
programme progress projection promotion property proposal prosperity protection
protocol publication punctuation purchase qualification quantity quarantine
questionnaire radiation reaction reality reception recognition recommendation
reduction reference reflection refrigerator registration regulation relationship
reliability relief reminder renovation repetition replacement reputation requirement
resemblance residence resolution resource responsibility restaurant restriction
retirement revenue revolution routine satisfaction scenario scholarship sculpture
selection sensation sequence settlement shipment signature simulation situation
skeleton software solution souvenir specification spectator sponsorship stability
stadium statement statistics storage strategy strength structure submission
subscription substance suggestion supermarket supplier supervision survey suspension
symptom sympathy technique technology telescope television temperament tendency
territory threshold tolerance tournament tradition traffic transaction transformation
transition translation transmission transparency transportation treatment tutorial
umbrella uncertainty understanding uniform university utility vacation validation
variation vegetable vehicle velocity venture verification vibration visibility
visitor vocabulary volunteer voyage warehouse wavelength wilderness workshop
"""

VERBS_MORE = """
accelerate accommodate accumulate acknowledge activate adapt adjust administer adopt
advertise advise allocate analyse anticipate appreciate approximate assemble assess
attach attract authorize automate bargain broadcast calculate calibrate categorize
certify clarify collaborate collect combine command comment communicate compile
complain complete compose concentrate conclude conduct configure connect consider
consolidate construct consult contact contain contribute convert coordinate correct
customize dedicate defend define delegate deliver demonstrate depend describe design
detect determine develop diagnose discover discuss dispatch display distribute
document download duplicate educate eliminate emphasize employ enable encourage
enhance ensure establish estimate evaluate examine exceed execute expand expect
experiment explore export extend facilitate familiarize finalize forecast formulate
generate highlight identify illustrate implement import include increase indicate
inform inherit initiate inspect install integrate interpret interrupt introduce
investigate invite isolate justify launch maintain manufacture maximize minimize
moderate modify motivate navigate negotiate nominate normalize notify observe obtain
operate optimize outline overlook participate perform persuade postpone predict
present preserve prevent prioritize process produce program promote propose protect
provide publish purchase qualify quantify recommend reconcile recover recruit reduce
register regulate reinforce relocate renovate represent request reserve resolve
respond restore retrieve reveal revise satisfy simplify specialize specify stabilize
standardize stimulate streamline strengthen submit subscribe substitute succeed
summarize supervise supply surround suspend sustain synchronize terminate transfer
transform translate transmit transport troubleshoot upgrade upload validate verify
visualize volunteer withdraw
"""

ADJECTIVES_MORE = """
absolute abundant academic accurate adequate adjacent advanced aggressive alternative
ambitious ancient annual anxious apparent appropriate approximate artificial automatic
average awkward beneficial brilliant capable casual cautious certain charming
chronological civil classic clever coastal colorful commercial compact competent
complete concrete confident conscious consistent constant contemporary convenient
creative critical crucial cultural decent decorative deliberate delicate delicious
dependable desperate detailed different digital diligent distinct domestic dramatic
dynamic economic efficient elaborate elegant electric electronic eligible emotional
enormous entire environmental equivalent essential eventual evident exact excellent
exceptional exclusive exotic experimental explicit extensive external extraordinary
fabulous familiar famous fantastic fascinating favorable fierce financial flawless
fluent formal fortunate fragile frequent functional fundamental generous genuine
global gradual grateful handsome harmless harmonious historical horizontal identical
immediate impressive incredible independent industrial inevitable informal initial
innovative instant intelligent intense internal international intimate invisible
legitimate liberal literal logical magnificent marvelous massive maximum mechanical
medical mental minimal minimum miniature moderate modest multiple mutual mysterious
national natural necessary negative neutral nominal normal notable numerous obvious
occasional official operational optimal optional ordinary organic original outdoor
overall parallel partial particular passive perfect permanent personal physical
pleasant plentiful positive potential practical precious precise predictable primary
private productive professional prominent proper prosperous punctual radical random
rapid rational realistic recent regional regular relevant remarkable representative
responsible responsive robust routine scenic seasonal secondary secure sensible
sensitive separate sequential serious significant silent similar sincere skeptical
sophisticated spacious spectacular spontaneous standard statistical strategic
strict structural subtle successful sufficient suitable superb superior supportive
surprising sustainable symbolic technical temporary terrific thorough tolerant
traditional transparent tremendous tropical typical ultimate unique universal
unusual urgent valuable various vertical vibrant virtual vital vivid voluntary
wonderful
"""

IRREGULAR_PLURALS = {
    "knife": "knives", "leaf": "leaves", "shelf": "shelves", "loaf": "loaves",
    "child": "children", "person": "people", "man": "men", "woman": "women",
    "foot": "feet", "tooth": "teeth", "mouse": "mice", "sheep": "sheep",
    "series": "series", "fish": "fish", "index": "indices", "analysis": "analyses",
    "wife": "wives", "life": "lives", "half": "halves", "scarf": "scarves",
}

VERBS = """
open close lock unlock check count scan stack load unload pack unpack ship deliver
order reorder return exchange refund charge pay price label sort restock stock store
sell buy browse compare choose pick select book cancel confirm update change fix
repair replace install remove clean wash dry fold iron sew mend paint build measure
cut chop slice dice peel grate stir whisk mix blend bake roast boil simmer fry grill
toast season taste serve pour fill empty heat cool chill freeze thaw melt
travel walk drive ride fly sail arrive depart leave visit explore wander climb hike
swim rest sleep wake wait call answer ask reply explain help assist support
handle manage plan schedule organize arrange prepare review approve reject
accept decline deploy release test debug profile measure monitor log alert restart
retry queue route balance cache evict compute train tokenize decode encode compress
print scan copy save load delete rename move share send receive forward archive
search filter match rank score sort merge split join count track trace report
listen talk speak shout whisper laugh smile nod agree disagree promise apologize
thank greet welcome invite celebrate enjoy prefer like love hate worry hope wish
notice remember forget learn teach study practice improve finish start stop begin
continue follow lead guide carry lift push pull drag drop grab hold hand reach
shop chat plan wrap skip step jog tap swap prep trim hug slip stir
"""

DOUBLING = set("""
stop shop plan ship drop chat wrap skip step grab jog tap swap scan prep chop stir
slip trim hug debug nod plug rub beg
""".split())


def doubles(v):
    """True if v (possibly with a re-/un- prefix) doubles its last consonant."""
    return any(v == p + d for d in DOUBLING for p in ("", "re", "un"))

IRREGULAR_PAST = {
    "buy": "bought", "sell": "sold", "pay": "paid", "choose": "chose", "build": "built",
    "cut": "cut", "sew": "sewed", "fry": "fried", "drive": "drove", "ride": "rode",
    "fly": "flew", "leave": "left", "swim": "swam", "sleep": "slept", "wake": "woke",
    "speak": "spoke", "teach": "taught", "begin": "began", "lead": "led", "hold": "held",
    "forget": "forgot", "send": "sent", "freeze": "froze", "split": "split",
    "put": "put", "find": "found", "take": "took", "make": "made", "give": "gave",
    "dry": "dried", "copy": "copied", "apply": "applied", "empty": "emptied",
    "deploy": "deployed", "reply": "replied", "worry": "worried", "study": "studied",
    "carry": "carried", "hurry": "hurried", "tidy": "tidied",
}

ADJECTIVES = """
quick slow fast early late new old fresh stale ripe warm cold hot cool mild dry wet
bright dark light heavy small large tiny huge short long wide narrow deep shallow
cheap expensive affordable pricey clean dirty tidy messy quiet loud calm busy empty
full crowded friendly helpful polite rude patient careful careless honest kind
gentle strong weak soft hard smooth rough sharp dull sweet sour bitter salty spicy
crisp crunchy creamy tender juicy bland rich plain fancy simple complex clear vague
safe risky ready steady happy sad angry tired sleepy hungry thirsty lucky curious
proud brave shy eager modern ancient local foreign rural urban central remote sunny
cloudy rainy windy snowy foggy stormy humid chilly frosty breezy gloomy damp wintry
green blue red yellow purple orange pink brown black white grey silver golden
reliable durable portable flexible stable visible available reasonable comfortable
useful careful graceful powerful peaceful cheerful thoughtful hopeful restful
"""

ADVERB_IRREGULAR = {"good": "well", "fast": "fast", "late": "lately", "hard": "hard"}

FIRST_NAMES = """
Mara Liam Noor Omar Priya Jonas Elena Mateo Sofia Yusuf Hana Ingrid Tariq Chloe Diego
Amara Felix Greta Hugo Iris Jamal Kaito Lena Milo Nadia Oskar Paula Quinn Rosa Samir
Tomas Uma Viktor Wren Ximena Yara Zane Aiko Bruno Carmen Dario Esme Farid Gwen Hassan
Ilse Jonah Keiko Luca Maeve Nico Olga Pedro Rhea Stefan Talia Ulrich Vera Wanjiru
Xavier Yosef Zara Anselm Beatriz Cosmin Dagny Emeka Fenna Giorgos Halla Idris Jovana
Kasper Leilani Mirela Nils Orla Pavel Ragnhild Sunita Teodor Una Valentin Wilma
"""

SURNAMES = """
Okafor Lindqvist Moreau Haddad Kowalski Tanaka Fernandes Novak Brennan Castillo Ivanova
Schneider Mensah Larsen Rossi Duarte Nakamura Adeyemi Petrov Sullivan Chen Oyelaran
Bergstrom Alvarez Kim Farouk Holm Wojcik Ortega Murphy Sato Quist Varga Ekström Dubois
Hoffmann Nilsen Papadopoulos Rahman Silva Tremblay Yilmaz Zielinski Achterberg Blom
"""

PLACES = """
Leeds Bristol Glasgow Dublin Cork Lisbon Porto Madrid Valencia Seville Lyon Marseille
Bordeaux Antwerp Ghent Utrecht Rotterdam Hamburg Bremen Leipzig Dresden Vienna Graz
Salzburg Prague Brno Warsaw Gdansk Vilnius Riga Tallinn Helsinki Turku Oslo Bergen
Stockholm Uppsala Copenhagen Aarhus Reykjavík Zürich Basel Geneva München Kraków
Malmö Göteborg Düsseldorf Köln Nürnberg Montréal Québec Toronto Halifax Boston Denver
Austin Seattle Portland Chicago Detroit Atlanta Tucson Lima Cusco Bogotá Medellín
Santiago Valparaíso Montevideo Córdoba Nairobi Accra Lagos Dakar Tunis Cairo Istanbul
İzmir Athens Thessaloniki Beirut Amman Mumbai Pune Chennai Colombo Kathmandu Hanoi
Bangkok Manila Osaka Kyoto Sapporo Busan Seoul Taipei Singapore Jakarta Perth Hobart
Auckland Wellington
"""

UTF8_EXTRA = [
    "café", "naïve", "résumé", "façade", "jalapeño", "piñata", "crème", "brûlée",
    "entrée", "déjà", "señor", "smörgåsbord", "über", "fiancée", "rosé", "soufflé",
    "São Paulo", "Tōkyō", "東京", "大阪", "京都", "ありがとう", "こんにちは", "Αθήνα",
    "Москва", "Привет", "naïveté", "coöperate", "Ærø", "Øresund", "Łódź", "Škoda",
]

EMOJI = ["☕", "📦", "🚚", "⭐", "🙂", "🌧", "☀", "🍞", "✅", "🛒"]

SYLL_A = "ba be bi bo ca co da de di do fa fe fi ga go ka ke ki ko la le li lo ma me mi mo na ne ni no pa pe pi po ra re ri ro sa se si so ta te ti to va ve vi vo za ze zo".split()
SYLL_B = "brix dor fen gal kin lux mar nix quor rant sen tor vex wyn zel tra vel nor mont lark drum fell grove".split()

TOWN_HEAD = "ash brind cold east fern glen hal kes lang mar north old ox pen quarry red rook sel thorn upper wes whit wolver yar".split()
TOWN_MID = ["", "", "ble", "den", "er", "ing", "ly", "man", "ow", "s", "wick"]
TOWN_TAIL = "bury by caster combe field ford gate ham haven hurst ley mere minster mouth port stead stow ton wick worth".split()

PRODUCT_KINDS = """
kettle toaster blender lamp backpack jacket headset speaker charger router monitor
keyboard chair desk mug pan knife umbrella tent stove drill blanket scarf boot watch
""".split()

STREET_KINDS = ["Street", "Road", "Lane", "Avenue", "Way", "Close", "Row", "Square", "Gardens", "Parade"]

CONNECTIVES = ["However", "Meanwhile", "Afterwards", "Still", "In the end", "Later",
               "Luckily", "Unfortunately", "As usual", "By noon", "Before closing",
               "On Monday", "Last week", "Next spring", "Overnight", "At first"]

UN_PREFIXABLE = ["lock", "pack", "load", "do", "fold", "wrap", "tie", "plug", "install",
                 "happy", "kind", "safe", "clear", "available", "reliable", "comfortable",
                 "reasonable", "friendly", "helpful", "lucky", "usual", "stable", "ready"]
RE_PREFIXABLE = ["stock", "order", "pack", "load", "fill", "print", "scan", "send", "build",
                 "start", "try", "route", "deploy", "test", "open", "price", "label",
                 "book", "check", "count", "heat", "boot", "write", "play", "charge"]


def words(block):
    return block.split()


def plural(n):
    if n in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[n]
    if n.endswith(("s", "x", "z", "ch", "sh")):
        return n + "es"
    if n.endswith("y") and n[-2] not in "aeiou":
        return n[:-1] + "ies"
    return n + "s"


def third(v):
    if v.endswith(("s", "x", "z", "ch", "sh", "o")):
        return v + "es"
    if v.endswith("y") and v[-2] not in "aeiou":
        return v[:-1] + "ies"
    return v + "s"


def past(v):
    if v in IRREGULAR_PAST:
        return IRREGULAR_PAST[v]
    if doubles(v):
        return v + v[-1] + "ed"
    if v.endswith("e"):
        return v + "d"
    if v.endswith("y") and v[-2] not in "aeiou":
        return v[:-1] + "ied"
    return v + "ed"


def gerund(v):
    if doubles(v):
        return v + v[-1] + "ing"
    if v.endswith("ie"):
        return v[:-2] + "ying"
    if v.endswith("e") and not v.endswith(("ee", "ye", "oe")):
        return v[:-1] + "ing"
    return v + "ing"


def adverb(a):
    if a in ADVERB_IRREGULAR:
        return ADVERB_IRREGULAR[a]
    if a.endswith("y"):
        return a[:-1] + "ily"
    if a.endswith("le") and len(a) > 3:
        return a[:-1] + "y"
    if a.endswith("ic"):
        return a + "ally"
    if a.endswith("ll"):
        return a + "y"
    return a + "ly"


def ness(a):
    if a.endswith("y"):
        return a[:-1] + "iness"
    return a + "ness"


def article(w):
    return "an" if w[0].lower() in "aeiou" else "a"


class Gen:
    def __init__(self, rng):
        self.r = rng
        self.nouns = words(NOUNS) + words(NOUNS_MORE)
        self.verbs = words(VERBS) + words(VERBS_MORE)
        self.adjs = words(ADJECTIVES) + words(ADJECTIVES_MORE)
        self.first = words(FIRST_NAMES)
        self.last = words(SURNAMES)
        self.places = words(PLACES)
        self.brands = sorted({self.invent() for _ in range(1400)})
        self.towns = sorted({(rng.choice(TOWN_HEAD) + rng.choice(TOWN_MID) + rng.choice(TOWN_TAIL)).capitalize()
                             for _ in range(700)})
        self.streets = sorted({self.invent(2) + " " + rng.choice(STREET_KINDS) for _ in range(300)})

    def c(self, seq):
        return self.r.choice(seq)

    def invent(self, n=None):
        n = n or self.r.choice([2, 2, 3])
        w = "".join(self.r.choice(SYLL_A) for _ in range(n - 1)) + self.r.choice(SYLL_B)
        return w.capitalize()

    def with_article(self, w):
        return article(w) + " " + w

    # ---- slot fillers
    def person(self):
        k = self.r.random()
        if k < 0.5:
            return self.c(self.first)
        if k < 0.8:
            return self.c(self.first) + " " + self.c(self.last)
        return self.c(["Ms", "Mr", "Dr", "Mx"]) + " " + self.c(self.last)

    def place(self):
        if self.r.random() < 0.3:
            return self.c(self.towns)
        if self.r.random() < 0.06:
            return self.c([w for w in UTF8_EXTRA if w[0].isupper() or ord(w[0]) > 0x2000])
        return self.c(self.places)

    def noun(self, pl=None):
        n = self.c(self.nouns)
        if pl is None:
            pl = self.r.random() < 0.4
        return plural(n) if pl else n

    def adj(self):
        r = self.r.random()
        a = self.c(self.adjs)
        if r < 0.08:
            u = self.c(UN_PREFIXABLE)
            if u in self.adjs or u in ("usual",):
                return "un" + u
        if r < 0.14 and len(a) < 7:
            return a + self.c(["er", "est"]) if not a.endswith(("e", "y")) else a
        return a

    def np(self, pl=None):
        n = self.noun(pl)
        r = self.r.random()
        if r < 0.45:
            n = self.adj() + " " + n
        elif r < 0.55:
            n = self.c(self.nouns) + " " + n
        return n

    def det_np(self, pl=None):
        np_ = self.np(pl)
        plural_np = np_.endswith("s") and self.r.random() < 0.5
        d = self.c(["the", "the", "this", "that", "our", "their", "every", "each"]) if not plural_np \
            else self.c(["the", "these", "those", "some", "many", "several", "all the", "a few"])
        if d == "the" and self.r.random() < 0.3 and not plural_np:
            d = article(np_)
        return d + " " + np_

    def verb(self, form):
        v = self.c(self.verbs)
        r = self.r.random()
        if r < 0.07:
            v = "re" + self.c(RE_PREFIXABLE)
        elif r < 0.11:
            u = self.c(UN_PREFIXABLE)
            if u in self.verbs or u in ("do", "tie", "plug"):
                v = "un" + u
        if form == "base":
            return v
        if form == "3sg":
            return third(v)
        if form == "past":
            return past(v)
        return gerund(v)

    def adv(self):
        return adverb(self.c(self.adjs))

    def price(self):
        cur = self.c(["$", "$", "€", "£", "¥"])
        if cur == "¥":
            return "¥" + str(self.r.randint(100, 30000))
        return "%s%d.%02d" % (cur, self.r.randint(1, 899), self.c([0, 49, 95, 99, self.r.randint(0, 99)]))

    def number(self):
        k = self.r.random()
        if k < 0.4:
            return str(self.r.randint(2, 99))
        if k < 0.7:
            return str(self.r.randint(100, 9999))
        if k < 0.85:
            return "%d.%d" % (self.r.randint(0, 99), self.r.randint(0, 9))
        return "{:,}".format(self.r.randint(10000, 9999999))

    def date(self):
        y = self.r.randint(2019, 2027)
        m = self.r.randint(1, 12)
        d = self.r.randint(1, 28)
        k = self.r.random()
        months = ["January", "February", "March", "April", "May", "June", "July",
                  "August", "September", "October", "November", "December"]
        if k < 0.4:
            return "%04d-%02d-%02d" % (y, m, d)
        if k < 0.7:
            return "%d %s %d" % (d, months[m - 1], y)
        return "%s %d" % (months[m - 1], d)

    def time(self):
        if self.r.random() < 0.5:
            return "%02d:%02d" % (self.r.randint(0, 23), self.c([0, 15, 30, 45, self.r.randint(0, 59)]))
        return "%d %s" % (self.r.randint(1, 12), self.c(["am", "pm", "a.m.", "p.m."]))

    def product(self):
        k = self.r.random()
        b = self.c(self.brands)
        kind = self.c(PRODUCT_KINDS)
        if k < 0.4:
            return "%s %s" % (b, kind)
        if k < 0.7:
            return "%s %s %d" % (b, kind.capitalize(), self.r.randint(2, 900))
        return "%s %s-%s%d" % (b, self.invent(2), self.c("XSLMQRTZ"), self.r.randint(1, 99))

    def weekday(self):
        return self.c(["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"])

    # ---- sentences, by topic
    def s_retail(self):
        t = self.r.randrange(15)
        if t == 14:
            return "New this month from %s, %s and %s: the %s, the %s and a %s %s." % (
                self.c(self.brands), self.c(self.brands), self.c(self.brands), self.product(), self.product(),
                self.adj(), self.c(PRODUCT_KINDS))
        if t == 0:
            return "%s %s %s %s before the %s." % (self.person(), self.verb("past"), self.det_np(), self.adv(), self.noun(False))
        if t == 1:
            return "The %s is on sale for %s until %s." % (self.product(), self.price(), self.weekday())
        if t == 2:
            return "We %s %s %s every %s, and %s the %s after %s." % (
                self.verb("base"), self.number(), self.noun(True), self.weekday(), self.verb("base"), self.noun(True), self.time())
        if t == 3:
            return "Aisle %d holds %s, %s and %s." % (self.r.randint(1, 40), self.np(True), self.np(True), self.np(True))
        if t == 4:
            return "Order #%d: %d x %s at %s, shipped to %s, %s." % (
                self.r.randint(10000, 999999), self.r.randint(1, 12), self.product(), self.price(), self.c(self.streets), self.place())
        if t == 5:
            return "%s said the %s were %s, so the team %s them %s." % (
                self.person(), self.noun(True), self.adj(), self.verb("past"), self.adv())
        if t == 6:
            return "Sales of %s rose %d%% in %s, while %s fell by %s." % (
                self.noun(True), self.r.randint(1, 80), self.place(), self.noun(True), self.price())
        if t == 7:
            return "Please %s the %s and %s the %s before you %s." % (
                self.verb("base"), self.np(), self.verb("base"), self.np(), self.verb("base"))
        if t == 8:
            return "The %s from %s arrived %s; %s %s it by %s." % (
                self.noun(False), self.c(self.brands), self.adv(), self.person(), self.verb("past"), self.time())
        if t == 9:
            return "Loyalty members get %d points per %s and a %s %s on their birthday." % (
                self.r.randint(1, 20), self.price(), self.adj(), self.noun(False))
        if t == 10:
            return "SKU %s-%04d (%s) is %s: %d in stock, %d on order." % (
                self.c(self.brands).upper()[:4], self.r.randint(0, 9999), self.product(),
                self.c(["low", "fine", "critical", "overstocked"]), self.r.randint(0, 400), self.r.randint(0, 200))
        if t == 11:
            return "%s's %s is %s than last year's, and the %s is %s." % (
                self.c(self.brands), self.noun(False), self.c(["lighter", "cheaper", "quieter", "sturdier", "smaller", "brighter"]),
                self.noun(False), self.adj())
        if t == 12:
            return "Nobody %s the %s until %s %s it on %s." % (
                self.verb("past"), self.np(), self.person(), self.verb("past"), self.date())
        return "%s %s the %s %s, %s the %s." % (
            self.c(CONNECTIVES), self.person(), self.verb("past"), self.np(), self.verb("gerund"), self.np())

    def s_service(self):
        t = self.r.randrange(10)
        n = self.person()
        if t == 0:
            return "Customer: Hi, I %s a %s on %s but it hasn't arrived yet.\nAgent: I'm sorry about that, %s. Let me check order %d for you." % (
                self.verb("past"), self.product(), self.date(), n.split()[0], self.r.randint(10000, 999999))
        if t == 1:
            return "Customer: Can I %s this %s if it's %s?\nAgent: Yes, you can %s it within %d days with the receipt." % (
                self.verb("base"), self.noun(False), self.adj(), self.verb("base"), self.c([14, 30, 60, 90]))
        if t == 2:
            return "Agent: Thanks for waiting. The %s was %s %s, so I've issued a refund of %s.\nCustomer: That's %s, thank you." % (
                self.noun(False), self.verb("past"), self.adv(), self.price(), self.c(["great", "perfect", "fine", "brilliant", "wonderful"]))
        if t == 3:
            return "Ticket %d (%s priority): %s reports that the %s %s when %s the %s." % (
                self.r.randint(1000, 99999), self.c(["low", "normal", "high", "urgent"]), n,
                self.noun(False), self.verb("3sg"), self.verb("gerund"), self.noun(False))
        if t == 4:
            return "\"I'd like to %s my %s,\" said %s. \"It's %s and the %s doesn't %s.\"" % (
                self.verb("base"), self.noun(False), n, self.adj(), self.noun(False), self.verb("base"))
        if t == 5:
            return "We'll %s a replacement %s to %s by %s, and you don't need to %s anything." % (
                self.verb("base"), self.noun(False), self.c(self.streets), self.weekday(), self.verb("base"))
        if t == 6:
            return "%s rated the call %d/5 and wrote: \"%s %s, very %s.\"" % (
                n, self.r.randint(1, 5), self.adj().capitalize(), self.noun(False), self.adj())
        if t == 7:
            return "If the %s is %s, we can %s it or %s %s." % (
                self.noun(False), self.c(["damaged", "missing", "late", "broken", "faulty", "the wrong size"]),
                self.verb("base"), self.verb("base"), self.with_article(self.noun(False)))
        if t == 8:
            return "User: What time does the %s store close on %s?\nAssistant: The %s store closes at %s on %ss." % (
                self.place(), self.weekday(), self.place(), self.time(), self.weekday())
        return "%s has %s %d %s this week and %s the %s %s." % (
            n, self.verb("past"), self.r.randint(2, 90), self.noun(True), self.verb("past"), self.np(), self.adv())

    def s_weather(self):
        t = self.r.randrange(6)
        if t == 0:
            return "Forecast for %s on %s: %s, %s, high of %d°C, low of %d°C, wind %d km/h from the %s." % (
                self.place(), self.weekday(), self.c(["rainy", "sunny", "cloudy", "foggy", "windy", "snowy", "stormy", "clear"]),
                self.c(["clearing later", "with showers", "turning colder", "warming up", "with gusts", "dry"]),
                self.r.randint(-5, 38), self.r.randint(-15, 20), self.r.randint(0, 90),
                self.c(["north", "south", "east", "west", "northwest", "southeast", "northeast", "southwest"]))
        if t == 1:
            return "A %s %s is %s toward %s, bringing %s and %s." % (
                self.c(["cold", "warm", "slow", "strong", "weak"]), self.c(["front", "storm", "system", "breeze", "ridge"]),
                self.verb("gerund"), self.place(), self.noun(False), self.c(["hail", "fog", "sleet", "drizzle", "thunder", "sunshine"]))
        if t == 2:
            return "It was %s in %s yesterday, and %s %s the %s %s." % (
                self.adj(), self.place(), self.person(), self.verb("past"), self.np(), self.adv())
        if t == 3:
            return "Humidity reached %d%% at %s; rainfall totals were %s mm." % (
                self.r.randint(20, 100), self.time(), self.number())
        if t == 4:
            return "When it's %s out, people %s more %s and fewer %s." % (
                self.c(["hot", "cold", "wet", "windy", "sunny", "grey"]), self.verb("base"), self.noun(True), self.noun(True))
        return "The %s warned of %s %s near %s after %s." % (
            self.c(["forecaster", "radio", "app", "met office", "ranger"]), self.adj(), self.noun(True), self.place(), self.time())

    def s_cooking(self):
        t = self.r.randrange(6)
        if t == 0:
            return "%s the %s and %s it %s for %d minutes." % (
                self.verb("base").capitalize(), self.noun(False), self.verb("base"), self.adv(), self.r.randint(2, 90))
        if t == 1:
            return "You'll need %d %s, %s of %s, and a %s %s." % (
                self.r.randint(1, 9), self.noun(True), self.c(["a cup", "a pinch", "200 g", "two spoons", "a handful", "half a litre"]),
                self.noun(False), self.adj(), self.noun(False))
        if t == 2:
            return "Preheat the oven to %d°C, then %s the %s until %s and %s." % (
                self.c([160, 180, 200, 220, 240]), self.verb("base"), self.noun(True), self.adj(), self.adj())
        if t == 3:
            return "%s's %s %s tastes %s with %s and a little %s." % (
                self.person(), self.adj(), self.c(["soup", "stew", "pie", "salad", "curry", "risotto", "tart", "bread"]),
                self.adj(), self.noun(True), self.noun(False))
        if t == 4:
            return "Serves %d. Prep time: %d min. Cook time: %d min. Keeps %d days %s." % (
                self.r.randint(1, 8), self.r.randint(5, 45), self.r.randint(5, 180), self.r.randint(1, 7),
                self.c(["in the fridge", "frozen", "in a sealed jar", "at room temperature"]))
        return "Don't %s the %s; %s it %s instead." % (self.verb("base"), self.noun(False), self.verb("base"), self.adv())

    def s_travel(self):
        t = self.r.randrange(7)
        if t == 0:
            return "The %s from %s to %s leaves platform %d at %s and arrives %s." % (
                self.c(["train", "bus", "ferry", "coach", "night train", "tram"]), self.place(), self.place(),
                self.r.randint(1, 22), self.time(), self.adv())
        if t == 1:
            return "%s %s through %s, %s the %s and %s every %s." % (
                self.person(), self.verb("past"), self.place(), self.verb("gerund"), self.np(True), self.verb("gerund"), self.noun(False))
        if t == 2:
            return "Flight %s%d to %s is %s; passengers should %s at gate %s%d." % (
                self.c(["HX", "LB", "QZ", "TR", "NV"]), self.r.randint(100, 9999), self.place(),
                self.c(["delayed", "on time", "boarding", "cancelled", "diverted"]), self.verb("base"), self.c("ABCDEF"), self.r.randint(1, 60))
        if t == 3:
            return "Our %s in %s had a %s %s, a %s %s and a view of the %s." % (
                self.c(["hotel", "hostel", "flat", "cabin", "guesthouse"]), self.place(), self.adj(), self.noun(False),
                self.adj(), self.noun(False), self.c(["harbor", "river", "square", "mountains", "old town", "cathedral", "sea"]))
        if t == 4:
            return "In %s we ate %s, %s the %s and %s until %s." % (
                self.place(), self.c(UTF8_EXTRA[:16] + ["dumplings", "noodles", "tapas", "pastries"]),
                self.verb("past"), self.np(), self.verb("past"), self.time())
        if t == 5:
            return "A return ticket to %s costs %s if you %s before %s." % (self.place(), self.price(), self.verb("base"), self.date())
        return "%s %s %s" % (self.c(EMOJI), self.place(), self.c(["was lovely.", "again next year!", "in the rain.", "at last."]))

    def s_tech(self):
        t = self.r.randrange(10)
        if t == 0:
            return "The %s %s %d %s per second with a p99 latency of %d ms." % (
                self.c(["worker", "server", "cluster", "coordinator", "cache", "router"]), self.verb("3sg"),
                self.r.randint(10, 90000), self.noun(True), self.r.randint(1, 900))
        if t == 1:
            return "After the %s, %s %s the %s and %s the %s %s." % (
                self.c(["deploy", "outage", "release", "incident", "migration", "upgrade"]), self.person(),
                self.verb("past"), self.np(), self.verb("past"), self.np(), self.adv())
        if t == 2:
            return "Version %d.%d.%d %s a %s %s in the %s %s." % (
                self.r.randint(0, 9), self.r.randint(0, 30), self.r.randint(0, 99), self.c(["fixes", "adds", "removes", "improves"]),
                self.adj(), self.noun(False), self.noun(False), self.c(["module", "service", "parser", "scheduler", "tokenizer"]))
        if t == 3:
            return "Set %s_%s=%d and %s the %s to %s the %s." % (
                self.c(["HELIUM", "APP", "SVC", "CACHE", "MAX"]), self.noun(False).upper(), self.r.randint(1, 65536),
                self.verb("base"), self.noun(False), self.verb("base"), self.noun(False))
        if t == 4:
            return "{\"id\": %d, \"%s\": \"%s\", \"%s\": %s, \"ok\": %s}" % (
                self.r.randint(1, 99999), self.noun(False), self.c(self.brands).lower(), self.noun(False),
                self.number().replace(",", ""), self.c(["true", "false"]))
        if t == 5:
            return "The agent %s the %s tool, %s the result and %s a %s summary for %s." % (
                self.verb("past"), self.c(["search", "calendar", "inventory", "weather", "refund", "tracking", "email"]),
                self.verb("past"), self.verb("past"), self.adj(), self.person())
        if t == 6:
            return "if %s_%s > %d: %s(%s)" % (self.noun(False), self.noun(False), self.r.randint(0, 1000),
                                            self.verb("base"), self.noun(False))
        if t == 7:
            return "Cache hit rate was %d%% on %s, up from %d%% after we %s the %s." % (
                self.r.randint(10, 99), self.date(), self.r.randint(1, 60), self.verb("past"), self.np())
        if t == 8:
            return "Each %s %s a %s of %s, and the %s %s them %s." % (
                self.noun(False), self.verb("3sg"), self.c(["queue", "list", "batch", "set", "stream"]),
                self.noun(True), self.noun(False), self.verb("3sg"), self.adv())
        return "%s: the %s is %s because the %s %s %s." % (
            self.c(["Note", "Warning", "Tip", "Update", "Fixed"]), self.noun(False), self.adj(), self.noun(False),
            self.verb("3sg"), self.adv())

    def s_story(self):
        t = self.r.randrange(6)
        a, b = self.person(), self.person()
        if t == 0:
            return "%s and %s %s the %s %s, %s about %s." % (
                a, b, self.verb("past"), self.np(), self.adv(), self.verb("gerund"), self.noun(True))
        if t == 1:
            return "\"We're %s,\" %s %s. \"They've %s the %s again.\"" % (
                self.adj(), a, self.c(["said", "sighed", "laughed", "whispered", "shouted", "admitted"]), self.verb("past"), self.np())
        if t == 2:
            return "%s, %s %s the %s and %s %s." % (
                self.c(CONNECTIVES), a, self.verb("past"), self.np(), self.verb("past"), self.adv())
        if t == 3:
            return "The %s of the %s surprised %s, who'd %s %s %s before." % (
                ness(self.c(self.adjs)), self.noun(False), a, self.c(["never", "rarely", "often", "always"]),
                self.verb("past"), self.det_np())
        if t == 4:
            return "%s %s %s, %s and %s." % (
                a, self.c(["felt", "seemed", "looked", "sounded"]), self.adj(), self.adj(), self.adj())
        return "It isn't %s to %s %s when the %s is %s." % (
            self.adj(), self.verb("base"), self.det_np(), self.noun(False), self.adj())

    def sentence(self):
        k = self.r.random()
        if k < 0.22:
            return self.s_retail()
        if k < 0.38:
            return self.s_service()
        if k < 0.48:
            return self.s_weather()
        if k < 0.58:
            return self.s_cooking()
        if k < 0.70:
            return self.s_travel()
        if k < 0.84:
            return self.s_tech()
        return self.s_story()

    def paragraph(self):
        n = self.r.randint(2, 7)
        out = []
        for _ in range(n):
            s = self.sentence()
            out.append(s[0].upper() + s[1:] if s[0].islower() else s)
        sep = "\n" if any("\n" in s for s in out) or self.r.random() < 0.15 else " "
        return sep.join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=20240917)
    ap.add_argument("--kbytes", type=int, default=290)
    ap.add_argument("-o", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "corpus.txt"))
    args = ap.parse_args()
    rng = random.Random(args.seed)
    g = Gen(rng)
    parts = [HAND_PROSE]
    size = len(HAND_PROSE.encode())
    while size < args.kbytes * 1024:
        p = g.paragraph()
        if rng.random() < 0.03:
            p = "\t" + p
        parts.append(p)
        size += len(p.encode()) + 2
    with open(args.o, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n\n".join(parts).rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
