-- Generates realistic signals in SQL: skewed scores 0-10, 12 categories, 200 tags with 3-6 a
-- signal (frequent ones much more common), 3 sections of about 400 characters, two years of
-- times. bench/run.sh makes them in a scratch database and loads them into the benchmark
-- database with `signals import` (or, with BENCH_LOAD=sql, runs this there directly: the rows go
-- through the table's trigger, so the search document is computed as for signals posted through
-- the API, and the lower-cased keys, which the service writes, are lower() here).
--   psql "$DATABASE_URL" -v first=1 -v last=1000000 -f bench/generate.sql
-- Run VACUUM ANALYZE afterwards.
\set ON_ERROR_STOP on
-- Inserts signals numbered :first to :last (so several sessions can load parts in parallel).

CREATE TEMP TABLE base AS SELECT ARRAY['model','models','training','inference','compute','cluster','gpu','chips','export','controls','funding','round','valuation','startup','investors','venture','capital','lab','research','paper','benchmark','reasoning','agents','agentic','tools','open','weights','release','license','safety','alignment','policy','regulation','europe','china','united','states','market','revenue','cloud','datacenter','energy','power','grid','nuclear','cooling','efficiency','latency','throughput','memory','bandwidth','attention','transformer','mixture','experts','routing','sparse','dense','parameters','tokens','context','window','multimodal','vision','speech','audio','video','robotics','humanoid','warehouse','autonomy','driving','lidar','sensor','fusion','mapping','satellite','launch','orbit','spectrum','network','fiber','edge','device','phone','laptop','silicon','foundry','node','process','yield','packaging','lithography','supply','chain','shortage','tariff','sanctions','lawsuit','copyright','data','privacy','breach','security','vulnerability','exploit','patch','ransomware','attack','defense','military','contract','government','agency','hospital','drug','discovery','protein','biology','genome','clinical','trial','diagnosis','imaging','finance','trading','bank','payments','crypto','stablecoin','exchange','fraud','compliance','audit','acquisition','merger','layoffs','hiring','talent','engineers','researchers','founders','ceo','board','strategy','partnership','platform','ecosystem','developers','api','pricing','subscription','enterprise','customers','adoption','productivity','coding','assistant','search','engine','browser','advertising','social','media','creators','content','moderation','election','misinformation','deepfake','watermark','detection','evaluation','leaderboard','scaling','laws','distillation','quantization','fine','tuning','reinforcement','learning','feedback','synthetic','retrieval','vector','database','embeddings','index','latency','serving','kernels','cuda','compiler','runtime','framework','python','rust','open','source','community','fork','maintainers','standard','protocol','interoperability'] AS w, ARRAY['Industry','Research','Policy','Security','Hardware','Open Source','Funding','Robotics','Health','Finance','Energy','Space'] AS c, ARRAY['ACQUISITION','Adoption','Advertising','AGENCY','Agentic','Agents','ALIGNMENT','Api','Assistant','ATTACK','Attention','Audio','AUDIT','Autonomy','Bandwidth','BANK','Benchmark','Biology','BOARD','Breach','Browser','CAPITAL','Ceo','Chain','CHINA','Chips','Clinical','CLOUD','Cluster','Coding','COMMUNITY','Compiler','Compliance','COMPUTE','Content','Context','CONTRACT','Controls','Cooling','COPYRIGHT','Creators','Crypto','CUDA','Customers','Data','DATABASE','Datacenter','Deepfake','DEFENSE','Dense','Detection','DEVELOPERS','Device','Diagnosis','DISCOVERY','Distillation','Driving','DRUG','Ecosystem','Edge','EFFICIENCY','Election','Embeddings','ENERGY','Engine','Engineers','ENTERPRISE','Europe','Evaluation','EXCHANGE','Experts','Exploit','EXPORT','Feedback','Fiber','FINANCE','Fine','Fork','FOUNDERS','Foundry','Framework','FRAUD','Funding','Fusion','GENOME','Government','Gpu','GRID','Hiring','Hospital','HUMANOID','Imaging','Index','INFERENCE','Interoperability','Investors','KERNELS','Lab','Laptop','LATENCY','Launch','Laws','LAWSUIT','Layoffs','Leaderboard','LEARNING','License','Lidar','LITHOGRAPHY','Maintainers','Mapping','MARKET','Media','Memory','MERGER','Military','Misinformation','MIXTURE','Model','Models','MODERATION','Multimodal','Network','NODE','Nuclear','Open','ORBIT','Packaging','Paper','PARAMETERS','Partnership','Patch','PAYMENTS','Phone','Platform','POLICY','Power','Pricing','PRIVACY','Process','Productivity','PROTEIN','Protocol','Python','QUANTIZATION','Ransomware','Reasoning','REGULATION','Reinforcement','Release','RESEARCH','Researchers','Retrieval','REVENUE','Robotics','Round','ROUTING','Runtime','Rust','SAFETY','Sanctions','Satellite','SCALING','Search','Security','SENSOR','Serving','Shortage','SILICON','Social','Source','SPARSE','Spectrum','Speech','STABLECOIN','Standard','Startup','STATES','Strategy','Subscription','SUPPLY','Synthetic','Talent','TARIFF','Throughput','Tokens','TOOLS','Trading','Training','TRANSFORMER','Trial','Tuning','UNITED','Valuation','Vector','VENTURE','Video','Vision','VULNERABILITY','Warehouse'] AS t;
-- The vocabulary: the real words above, then 3,000 made-up rarer ones. Words are drawn with a
-- Zipf-like skew (index = V * random()^2.5), so like real text a few words are everywhere and
-- most are rare: a two-word search matches a few percent of signals, not all of them.
CREATE TEMP TABLE vocab AS
SELECT b.w || ARRAY(
           SELECT s1 || s2 || s3
           FROM unnest(ARRAY['ka','lo','mi','ren','tor','vex','zu','pha','quin','dra','sel','bor','nyx','ul','gar']) s1,
                unnest(ARRAY['ba','te','ri','mon','sa','lu','ve','ko','dan','pi','ru','fen','xo','ha','ge']) s2,
                unnest(ARRAY['n','x','r','s','l','th','m','k','d','sh','v','z','t','p']) s3
           ORDER BY md5(s1 || s2 || s3) LIMIT 3000) AS w,
       b.c, b.t
FROM base b;

-- Pools of random texts, made once; each signal picks its parts from them at random, which is
-- far faster than making every text anew and still gives a million distinct combinations.
CREATE TEMP TABLE words AS SELECT i::int, w FROM unnest((SELECT w FROM vocab)) WITH ORDINALITY AS u(w, i);
CREATE TEMP TABLE pool (id int PRIMARY KEY, words text, tags text[]);
INSERT INTO pool (id, words)
SELECT d.p, string_agg(words.w, ' ' ORDER BY d.k)
FROM (SELECT p, k, 1 + floor(power(random(), 2.5) * (SELECT count(*) FROM words))::int AS r
        FROM generate_series(1, 20000) AS p, generate_series(1, 80) AS k) AS d
JOIN words ON words.i = d.r
GROUP BY d.p;
-- 3 to 6 distinct tags, skewed towards the start of the list (a few tags are very common)
UPDATE pool SET tags = ARRAY(SELECT DISTINCT v.t[1 + floor(power(random(), 2.2) * 200)::int]
                               FROM vocab v, generate_series(1, 3 + floor(random() * 4)::int + (id % 1)));
ANALYZE pool;

INSERT INTO signals (id, slug, title, summary, body, score, category, category_key, published_at,
                     sections, tags, tag_keys, source_url, created_at, updated_at)
SELECT
    -- UUIDv7 from the publication time: 48-bit milliseconds, version 7, variant 8, random rest.
    (lpad(to_hex((extract(epoch FROM s.p) * 1000)::bigint), 12, '0') || '7'
        || substr(md5(s.g::text || random()::text), 1, 3) || '8'
        || substr(md5(random()::text || s.g::text), 1, 15))::uuid,
    'bench-' || s.g,
    initcap(split_part(t.words, ' ', 1) || ' ' || split_part(t.words, ' ', 2) || ' ' || split_part(t.words, ' ', 3)
        || ' ' || split_part(t.words, ' ', 4) || ' ' || split_part(t.words, ' ', 5) || ' ' || split_part(t.words, ' ', 6)),
    initcap(left(su.words, 200)) || '.',
    initcap(left(b.words, 380)) || '.',
    -- skewed: about 5 on average, 9 and 10 rare; min_score=7 matches roughly one in five
    least(10, greatest(0, round(5 + 1.9 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))))::smallint,
    cat.c,
    lower(cat.c),
    s.p,
    jsonb_build_array(
        jsonb_build_object('heading', 'Technical Context', 'body', initcap(left(x1.words, 400)) || '.'),
        jsonb_build_object('heading', 'Why It Matters', 'body', initcap(left(x2.words, 400)) || '.'),
        jsonb_build_object('heading', 'What to Watch Next', 'body', initcap(left(x3.words, 400)) || '.')),
    tg.tags,
    ARRAY(SELECT lower(t) FROM unnest(tg.tags) AS t),
    'https://example.com/story/' || s.g,
    s.p, s.p
FROM (SELECT g, now() - random() * interval '730 days' AS p,
             1 + floor(random() * 20000)::int AS r1, 1 + floor(random() * 20000)::int AS r2,
             1 + floor(random() * 20000)::int AS r3, 1 + floor(random() * 20000)::int AS r4,
             1 + floor(random() * 20000)::int AS r5, 1 + floor(random() * 20000)::int AS r6,
             1 + floor(random() * 20000)::int AS r7,
             1 + floor(power(random(), 1.5) * 12)::int AS rc
        FROM generate_series(:first, :last) AS g) AS s
JOIN (SELECT i, c[i] AS c FROM vocab, generate_series(1, 12) AS i) AS cat ON cat.i = s.rc
JOIN pool t ON t.id = s.r1
JOIN pool su ON su.id = s.r2
JOIN pool b ON b.id = s.r3
JOIN pool x1 ON x1.id = s.r4
JOIN pool x2 ON x2.id = s.r5
JOIN pool x3 ON x3.id = s.r6
JOIN pool tg ON tg.id = s.r7;
