"""The catalogue's vocabulary and the platform's rhythm: categories, prices, plans, channels, behaviour constants."""

from __future__ import annotations

from itertools import accumulate

from schemas.events import SHARE_CHANNELS, Course, Purchase, Share, View

#: a record the simulator yields
_Record = View | Purchase | Share | Course

SECOND_MS = 1_000
MINUTE_MS = 60_000
HOUR_MS = 3_600_000
DAY_MS = 86_400_000
WEEK_MS = 7 * DAY_MS
_MAX_TS = 10**14  # schemas.base.parse_ts bound
_LOCAL_OFFSET_MS = 8 * HOUR_MS  # the platform's users live in UTC+8 (diurnal and weekly rhythm)

# ---------------------------------------------------------------------------------------------
# the catalogue's vocabulary

#: category -> (share of the catalogue, subjects as (title word, tag), title patterns as (template, tags))
CATEGORIES: dict[str, tuple[float, list[tuple[str, str]], list[tuple[str, tuple[str, ...]]]]] = {
    "programming": (
        0.20,
        [("Python", "python"), ("JavaScript", "javascript"), ("Go", "go"), ("Rust", "rust"),
         ("Java", "java"), ("C++", "cpp"), ("TypeScript", "typescript"), ("Kotlin", "kotlin"),
         ("SQL", "sql"), ("Swift", "swift")],
        [("{s} for Beginners", ("beginner",)), ("Advanced {s}", ("advanced",)),
         ("{s} in Practice", ("projects",)), ("Web Development with {s}", ("web", "backend")),
         ("{s} Concurrency Deep Dive", ("concurrency", "advanced")),
         ("Building APIs with {s}", ("api", "backend")), ("Testing {s} Applications", ("testing",)),
         ("Algorithms and Data Structures in {s}", ("algorithms", "interview"))],
    ),
    "data-science": (
        0.16,
        [("Python", "python"), ("R", "r"), ("Pandas", "pandas"), ("Machine Learning", "machine-learning"),
         ("Deep Learning", "deep-learning"), ("Statistics", "statistics"), ("PyTorch", "pytorch"),
         ("Data Visualization", "visualization"), ("NLP", "nlp"), ("SQL", "sql")],
        [("{s} for Data Analysis", ("analysis",)), ("Practical {s}", ("projects",)),
         ("{s} from Scratch", ("beginner",)), ("Applied {s} for Business", ("business-analytics",)),
         ("{s} Bootcamp", ("bootcamp",)), ("Hands-on {s} Projects", ("projects",)),
         ("{s}: Zero to Hero", ("beginner", "career"))],
    ),
    "design": (
        0.10,
        [("Figma", "figma"), ("UI Design", "ui"), ("UX Research", "ux"), ("Typography", "typography"),
         ("Illustrator", "illustrator"), ("Photoshop", "photoshop"), ("Branding", "branding"),
         ("Motion Design", "motion"), ("Color Theory", "color")],
        [("{s} Fundamentals", ("beginner",)), ("{s} Masterclass", ("advanced",)),
         ("{s} for Product Designers", ("product",)), ("Mastering {s}", ("advanced",)),
         ("{s} Portfolio Projects", ("portfolio", "projects"))],
    ),
    "business": (
        0.13,
        [("Project Management", "project-management"), ("Excel", "excel"),
         ("Financial Modeling", "finance"), ("Leadership", "leadership"), ("Negotiation", "negotiation"),
         ("Startup Strategy", "startup"), ("Product Management", "product"), ("Accounting", "accounting"),
         ("PowerPoint", "presentation")],
        [("{s} Essentials", ("beginner",)), ("{s} for Managers", ("management",)),
         ("{s} in 30 Days", ("quick-start",)), ("Practical {s}", ("practical",)),
         ("Advanced {s}", ("advanced",))],
    ),
    "languages": (
        0.14,
        [("English", "english"), ("Japanese", "japanese"), ("Korean", "korean"), ("French", "french"),
         ("Spanish", "spanish"), ("German", "german"), ("Business English", "business-english"),
         ("Cantonese", "cantonese")],
        [("{s} for Beginners", ("beginner",)), ("Conversational {s}", ("speaking",)),
         ("{s} Grammar Made Simple", ("grammar",)), ("{s} Pronunciation Workshop", ("pronunciation",)),
         ("Everyday {s}", ("speaking", "daily")), ("{s} Exam Preparation", ("exam",))],
    ),
    "music": (
        0.09,
        [("Guitar", "guitar"), ("Piano", "piano"), ("Ukulele", "ukulele"), ("Singing", "singing"),
         ("Music Theory", "theory"), ("Music Production", "production"), ("Drums", "drums"),
         ("Songwriting", "songwriting"), ("Guzheng", "guzheng")],
        [("{s} for Absolute Beginners", ("beginner",)), ("{s} Fundamentals", ("beginner",)),
         ("Intermediate {s}", ("intermediate",)), ("{s} Masterclass", ("advanced",)),
         ("Learn {s} in 8 Weeks", ("quick-start",))],
    ),
    "photography": (
        0.07,
        [("Portrait Photography", "portrait"), ("Smartphone Photography", "smartphone"),
         ("Lightroom", "lightroom"), ("Street Photography", "street"),
         ("Landscape Photography", "landscape"), ("Studio Lighting", "lighting"),
         ("Photo Editing", "editing"), ("Product Photography", "product-photo")],
        [("{s} Essentials", ("beginner",)), ("{s}: From Basics to Pro", ("beginner", "advanced")),
         ("Creative {s}", ("creative",)), ("{s} Workshop", ("practical",)), ("Mastering {s}", ("advanced",))],
    ),
    "marketing": (
        0.11,
        [("SEO", "seo"), ("Social Media Marketing", "social-media"), ("Content Marketing", "content"),
         ("Email Marketing", "email-marketing"), ("Growth Hacking", "growth"), ("Copywriting", "copywriting"),
         ("Brand Strategy", "brand"), ("Douyin Marketing", "douyin"), ("Xiaohongshu Marketing", "xiaohongshu"),
         ("Marketing Analytics", "analytics")],
        [("{s} Fundamentals", ("beginner",)), ("The {s} Playbook", ("practical",)),
         ("{s} for Small Businesses", ("small-business",)), ("Data-Driven {s}", ("analytics",)),
         ("Advanced {s}", ("advanced",))],
    ),
}
_CAT_NAMES = list(CATEGORIES)
_CAT_SHARE = [CATEGORIES[c][0] for c in _CAT_NAMES]

#: list prices (currency units) and how common each is; 0 = free course
_PRICE_POINTS = (0, 49, 69, 99, 129, 149, 199, 249, 299, 399, 499, 699, 999)
_PRICE_WEIGHTS = (10, 9, 8, 15, 10, 10, 12, 7, 7, 4, 4, 2, 1)
_DISCOUNTS = (0.5, 0.7, 0.8, 0.85, 0.9)
#: subscription plans: price and how long they unlock every course
PLAN_PRICES: dict[str, float] = {"monthly": 129.0, "annual": 999.0}
_PLAN_DAYS = {"monthly": 30, "annual": 365}

#: share channel -> (how often chosen, most invitees one share can bring, invitee conversion factor)
_CHANNELS: dict[str, tuple[float, int, float]] = {
    "wechat_moments": (0.25, 5, 0.8),
    "wechat_group": (0.20, 5, 1.0),
    "wechat_friend": (0.20, 2, 1.4),
    "link": (0.10, 3, 0.9),
    "email": (0.04, 1, 1.2),
    "weibo": (0.08, 4, 0.7),
    "qq": (0.10, 3, 1.0),
    "other": (0.03, 1, 0.9),
}
assert set(_CHANNELS) == set(SHARE_CHANNELS)
_CH_NAMES = list(_CHANNELS)
_CH_CUM = list(accumulate(v[0] for v in _CHANNELS.values()))

# relative session intensity by local hour (normalised to mean 1 below), and weekend uplift
_HOURLY = (0.5, 0.25, 0.12, 0.08, 0.06, 0.08, 0.2, 0.45, 0.6, 0.65, 0.7, 0.75,
           0.95, 0.8, 0.7, 0.7, 0.75, 0.8, 0.9, 1.1, 1.35, 1.45, 1.2, 0.85)
_mean_h = sum(_HOURLY) / 24
_DIURNAL = tuple(h / _mean_h for h in _HOURLY)
_WEEKDAY = (1.0, 1.0, 1.0, 1.0, 1.0, 1.25, 1.25)  # Monday..Sunday
_mean_w = sum(_WEEKDAY) / 7
_WEEKDAY = tuple(w / _mean_w for w in _WEEKDAY)
# relative intensity by local hour of the week (epoch day 0, 1970-01-01, was a Thursday), over its peak
_HOW = [_DIURNAL[h % 24] * _WEEKDAY[(h // 24 + 3) % 7] for h in range(168)]
_RHYTHM_PEAK = max(_HOW)
_RHYTHM = tuple(x / _RHYTHM_PEAK for x in _HOW)
_WEEK_FACTOR_CAP = 2.5  # cap of a user's week-to-week activity factor (gamma, mean ~1)

# behaviour knobs (documented in the README)
_PRESENT_AT_START = 0.65      # share of `users` already signed up at the start
_CONTINUE_P = 0.8             # a session continues a course in progress (else discovers one)
_RECENT_COURSE_P = 0.15       # a discovery looks at recently published courses first
_MAX_ACTIVE = 5               # courses in progress at once; the oldest is dropped beyond that
_BREAK_P = 0.05               # after a session, chance of a break of 2-7 days
_PLAN_SHARE_P = 0.06          # at a paywall, an active learner may subscribe instead of buying
_REFERRER_CONVERSION = 0.5    # invitee of a natural referrer buys the shared course
_OTHER_CONVERSION = 0.1       # invitee of anyone else buys the shared course
