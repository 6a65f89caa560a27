"""Medication classification. Expected memberships come from the brief and clinical-rules.md, codes from the
sources recorded in each value set (listed in the SOURCE column below), never from the code under test."""

from __future__ import annotations

import pytest

from terminology import CodeRef, Terminology

from .conftest import ATC, RXNORM

# Class membership: clinical-rules.md section 4 and 7, and the brief's standard class members.
EXPECTED_MEMBERS: dict[str, set[str]] = {
    "loop-diuretic": {"furosemide", "bumetanide", "torsemide", "ethacrynic acid"},
    "thiazide-diuretic": {
        "hydrochlorothiazide",
        "chlorthalidone",
        "chlorothiazide",
        "indapamide",
        "metolazone",
        "methyclothiazide",
    },
    "potassium-sparing-diuretic": {"spironolactone", "eplerenone", "amiloride", "triamterene", "finerenone"},
    "carbonic-anhydrase-inhibitor": {"acetazolamide", "methazolamide"},
    "proton-pump-inhibitor": {
        "omeprazole",
        "esomeprazole",
        "lansoprazole",
        "dexlansoprazole",
        "pantoprazole",
        "rabeprazole",
    },
    "mg-wasting-other": {
        "cisplatin",
        "carboplatin",
        "oxaliplatin",
        "cetuximab",
        "panitumumab",
        "tacrolimus",
        "cyclosporine",
        "amphotericin b",
        "foscarnet",
        "pentamidine",
        "gentamicin",
        "tobramycin",
        "amikacin",
    },
    "mg-salt-organic": {
        f"magnesium {anion}"
        for anion in (
            "citrate",
            "glycinate",
            "lactate",
            "aspartate",
            "gluconate",
            "malate",
            "orotate",
            "taurate",
            "threonate",
            "bisglycinate",
        )
    },
    # Trisilicate, an inorganic silicate, is named among the antacids of clinical-rules.md version 2, section 5.
    "mg-salt-inorganic": {
        f"magnesium {a}" for a in ("oxide", "hydroxide", "carbonate", "sulfate", "chloride", "trisilicate")
    },
    "interacts-tetracycline": {"doxycycline", "minocycline", "tetracycline"},
    "interacts-fluoroquinolone": {"ciprofloxacin", "levofloxacin", "moxifloxacin"},
    "interacts-bisphosphonate": {"alendronate", "risedronate", "ibandronate"},
    "interacts-levothyroxine": {"levothyroxine"},
    # clinical-rules.md version 2, section 7.3: bictegravir is spaced like dolutegravir; eltrombopag has its own row.
    "interacts-integrase-inhibitor": {"dolutegravir", "bictegravir"},
    "interacts-gabapentin": {"gabapentin"},
    "interacts-eltrombopag": {"eltrombopag"},
}
ALL_INGREDIENTS = sorted((name, cls) for cls, names in EXPECTED_MEMBERS.items() for name in names)

# An extract generated from NLM's RxNorm release files: one record per ingredient with RXCUI, TTY and name.
NLM_EXTRACT = "RxNorm extract (davidanderson3/rxnorm-ingredients, from the NLM 2025-10-06 release)"

# RxNorm ingredient codes, with where each was verified.
INGREDIENT_CODES = [
    ("4603", "furosemide", "brief (fixed fact)"),
    ("5487", "hydrochlorothiazide", "brief (fixed fact)"),
    ("7646", "omeprazole", "brief (fixed fact)"),
    ("283742", "esomeprazole", "public ATC-grouped RxNorm list, A02BC"),
    ("17128", "lansoprazole", "public ATC-grouped RxNorm list, A02BC"),
    ("816346", "dexlansoprazole", "public ATC-grouped RxNorm list, A02BC"),
    ("40790", "pantoprazole", "public ATC-grouped RxNorm list, A02BC"),
    ("114979", "rabeprazole", "public ATC-grouped RxNorm list, A02BC"),
    ("9997", "spironolactone", "public RxCUI tables"),
    ("6582", "magnesium oxide", "public ATC-grouped RxNorm list, A02AA"),
    ("6581", "magnesium hydroxide", "public ATC-grouped RxNorm list, A02AA"),
    ("29155", "magnesium carbonate", "public ATC-grouped RxNorm list, A02AA"),
    ("732", "amphotericin b", "public RxNorm antibiotic map"),
    ("4413", "gentamicin", "public RxNorm antibiotic map"),
    ("10627", "tobramycin", "public RxNorm antibiotic map"),
    ("641", "amikacin", "public RxNorm antibiotic map"),
    ("10395", "tetracycline", "public RxNorm antibiotic map"),
    ("2551", "ciprofloxacin", "public RxCUI tables"),
    ("82122", "levofloxacin", "public RxNorm antibiotic map"),
    ("139462", "moxifloxacin", "public RxNorm antibiotic map"),
    ("10582", "levothyroxine", "public RxCUI tables"),
    ("25480", "gabapentin", "public RxCUI tables"),
    # CPIC database schema, cpicpgx/cpic-schema drug.sql: rows "RxNorm:<code>\t<name>".
    ("2555", "cisplatin", "CPIC drug.sql"),
    ("40048", "carboplatin", "CPIC drug.sql"),
    ("32592", "oxaliplatin", "CPIC drug.sql"),
    ("318341", "cetuximab", "CPIC drug.sql"),
    ("42316", "tacrolimus", "CPIC drug.sql"),
    ("3008", "cyclosporine", "CPIC drug.sql"),
    ("6826", "methazolamide", "CPIC drug.sql"),
    ("1433868", "dolutegravir", "CPIC drug.sql"),
    ("711942", "eltrombopag", "CPIC drug.sql + RxNorm extract E.json (IN record)"),
    # OHDSI LEGEND concept sets '[LEGEND] Diuretics' / thiazides in ohdsi-studies/Covid19Icarius cohort JSON
    # (CONCEPT_CODE with VOCABULARY_ID RxNorm, CONCEPT_CLASS_ID Ingredient); SynPUF = ohdsi-synpuf-demo concept rows.
    ("1808", "bumetanide", "OHDSI LEGEND Diuretics"),
    ("38413", "torsemide", "OHDSI LEGEND Diuretics"),
    ("2409", "chlorthalidone", "OHDSI LEGEND thiazides + SynPUF concept table"),
    ("5764", "indapamide", "OHDSI LEGEND thiazides"),
    ("6916", "metolazone", "OHDSI LEGEND thiazides + SynPUF concept table"),
    ("298869", "eplerenone", "OHDSI LEGEND Diuretics"),
    ("644", "amiloride", "OHDSI LEGEND Diuretics"),
    ("10763", "triamterene", "OHDSI LEGEND Diuretics"),
    (
        "167",
        "acetazolamide",
        "PEDSnet rx_cai.csv and rx_2021_02_Acetazolamide_V1.csv (ingredient rxcui column)",
    ),  # RxNorm ingredient records (RXCUI, TTY, name) of an extract generated from NLM's RxNorm release files.
    (
        "62349",
        "ethacrynic acid",
        NLM_EXTRACT + ": IN 'ethacrynate'; 4109 'ethacrynic acid' is a PIN",
    ),
    ("6860", "methyclothiazide", NLM_EXTRACT),
    ("2396", "chlorothiazide", NLM_EXTRACT),
    ("2562811", "finerenone", NLM_EXTRACT),
    ("6980", "minocycline", NLM_EXTRACT),
    ("3640", "doxycycline", "OHDSI Eunomia CONCEPT.csv, concept class Ingredient"),
    ("46041", "alendronate", "OHDSI Eunomia CONCEPT.csv, concept class Ingredient"),
    ("73056", "risedronate", NLM_EXTRACT),
    ("115264", "ibandronate", NLM_EXTRACT),
    (
        "33562",
        "foscarnet",
        NLM_EXTRACT + " (4450, a guess from memory, is fluconazole)",
    ),
    ("263034", "panitumumab", NLM_EXTRACT),
    ("7994", "pentamidine", NLM_EXTRACT),
    (
        "6585",
        "magnesium sulfate",
        NLM_EXTRACT,
    ),
    (
        "6579",
        "magnesium chloride",
        NLM_EXTRACT,
    ),
    (
        "52356",
        "magnesium citrate",
        NLM_EXTRACT,
    ),
    (
        "52358",
        "magnesium gluconate",
        NLM_EXTRACT,
    ),
    (
        "214688",
        "magnesium lactate",
        NLM_EXTRACT,
    ),
    (
        "142131",
        "magnesium aspartate",
        NLM_EXTRACT,
    ),
    (
        "476818",
        "magnesium glycinate",
        NLM_EXTRACT,
    ),
    ("1999660", "bictegravir", NLM_EXTRACT + ", B.json ingredient record"),
    ("29170", "magnesium trisilicate", NLM_EXTRACT + ", M.json ingredient record"),
]

# Product codes (SCD/SBD/SCDC) and the ingredients they contain.
PRODUCT_CODES = [
    ("315971", {"furosemide"}, "Synthea 'Lasix 40mg' (brief)"),
    ("1719286", {"furosemide"}, "Synthea furosemide injection (brief)"),
    ("316049", {"hydrochlorothiazide"}, "Synthea (brief)"),
    ("316052", {"hydrochlorothiazide"}, "Synthea (brief)"),
    ("197417", {"bumetanide"}, "VSAC Diuretics 2.16.840.1.113762.1.4.1248.170"),
    ("198371", {"torsemide"}, "VSAC Diuretics"),
    ("1251903", {"ethacrynic acid"}, "VSAC Diuretics"),
    ("197499", {"chlorthalidone"}, "VSAC Diuretics"),
    ("197475", {"chlorothiazide"}, "VSAC Diuretics"),
    ("313096", {"spironolactone"}, "VSAC Diuretics"),
    ("351256", {"eplerenone"}, "VSAC Diuretics"),
    ("977880", {"amiloride"}, "VSAC Diuretics"),
    ("198313", {"triamterene"}, "VSAC Diuretics"),
    ("198314", {"hydrochlorothiazide", "triamterene"}, "VSAC Diuretics, combination"),
    ("977883", {"amiloride", "hydrochlorothiazide"}, "VSAC Diuretics, combination"),
    ("197382", {"chlorthalidone"}, "VSAC Diuretics, atenolol + chlorthalidone"),
    ("197304", {"acetazolamide"}, "VSAC eCQM expansion"),
    ("198051", {"omeprazole"}, "PEDSnet rx_ppi"),
    ("207212", {"omeprazole"}, "PEDSnet rx_ppi, [Prilosec] SBD"),
    ("328287", {"ciprofloxacin"}, "HL7 nhsn-dqm example"),
    ("1806380", {"gabapentin"}, "VSAC eCQM expansion"),
    # PEDSnet Variable-Dictionary drugs/rx_ppi.csv (OMOP rows, vocabulary RxNorm).
    ("402014", {"omeprazole"}, "PEDSnet rx_ppi, omeprazole 20 MG DR tablet"),
    ("606726", {"esomeprazole"}, "PEDSnet rx_ppi, esomeprazole 20 MG DR capsule"),
    ("606728", {"esomeprazole"}, "PEDSnet rx_ppi, [Nexium] SBD"),
    ("311277", {"lansoprazole"}, "PEDSnet rx_ppi, lansoprazole 30 MG DR capsule"),
    ("206206", {"lansoprazole"}, "PEDSnet rx_ppi, [Prevacid] SBD"),
    ("314200", {"pantoprazole"}, "PEDSnet rx_ppi, pantoprazole 40 MG DR tablet"),
    ("284400", {"pantoprazole"}, "PEDSnet rx_ppi, [Protonix] SBD"),
    ("283669", {"pantoprazole"}, "PEDSnet rx_ppi, pantoprazole 40 MG Injection"),
    # PEDSnet rx_tacrolimus_cyclosporine.csv and rx_cai.csv, rx_diuretics_thiazides.csv.
    ("198379", {"tacrolimus"}, "PEDSnet rx_tacrolimus_cyclosporine, 1 ML tacrolimus 5 MG/ML Injection"),
    ("212957", {"cyclosporine"}, "PEDSnet rx_tacrolimus_cyclosporine, [Sandimmune] oral solution"),
    ("1732369", {"cyclosporine"}, "PEDSnet rx_tacrolimus_cyclosporine, [Sandimmune] injection"),
    ("307702", {"acetazolamide"}, "PEDSnet rx_cai, acetazolamide 500 MG Injection"),
    ("197886", {"hydrochlorothiazide"}, "PEDSnet rx_diuretics_thiazides, HCTZ / lisinopril (lisinopril not a member)"),
    ("213447", {"chlorothiazide"}, "PEDSnet rx_diuretics_thiazides, [Diuril] 500 MG tablet"),
    # VSAC 'Antibiotic Medications for Pharyngitis' 2.16.840.1.113883.3.464.1003.196.12.1001 (ecqm-content-r4-2021).
    ("1649988", {"doxycycline"}, "VSAC pharyngitis, doxycycline hyclate 100 MG capsule"),
    ("197984", {"minocycline"}, "VSAC pharyngitis, minocycline 100 MG capsule"),
    ("198250", {"tetracycline"}, "VSAC pharyngitis, tetracycline hydrochloride 250 MG capsule"),
    ("309309", {"ciprofloxacin"}, "VSAC pharyngitis, ciprofloxacin 500 MG tablet"),
    ("199885", {"levofloxacin"}, "VSAC pharyngitis, levofloxacin 500 MG tablet"),
    ("311787", {"moxifloxacin"}, "VSAC pharyngitis, moxifloxacin 400 MG tablet"),
    ("1870650", {"gentamicin"}, "VSAC pharyngitis, 2 ML gentamicin 40 MG/ML Injection"),
    ("313416", {"tobramycin"}, "VSAC pharyngitis, tobramycin 10 MG/ML injectable solution"),
    ("1723156", {"amikacin"}, "VSAC pharyngitis, 2 ML amikacin 250 MG/ML Injection"),
    ("2562816", {"finerenone"}, "VSAC Antihypertensives 2.16.840.1.113762.1.4.1248.164, finerenone 10 MG tablet"),
    ("311671", {"metolazone"}, "SynPUF concept table, metolazone 5 MG Oral Tablet"),
    ("876439", {"acetazolamide"}, "PEDSnet rx_cai, [Diamox] 500 MG extended release capsule"),
    ("1433879", {"dolutegravir"}, "VSAC INSTI 2.16.840.1.113762.1.4.1146.1600 (HL7 case-reporting), [Tivicay] 50 MG"),
    ("2122519", {"dolutegravir"}, "Synthea medications.csv, dolutegravir / lamivudine (lamivudine not a member)"),
    ("597195", {"carboplatin"}, "Synthea medications.csv, carboplatin 10 MG/ML Injectable Solution"),
    ("1736776", {"oxaliplatin"}, "Synthea medications.csv, 10 ML oxaliplatin 5 MG/ML Injection"),
    ("904421", {"alendronate"}, "OHDSI QueryLibrary D27 sample output, alendronic acid 10 MG [Fosamax]"),
    ("966222", {"levothyroxine"}, "Synthea medications.csv, levothyroxine sodium 0.075 MG Oral Tablet"),
    (
        "1650142",
        {"doxycycline"},
        "Synthea medications.csv, doxycycline monohydrate 100 MG Oral Tablet",
    ),  # VSAC 'Pharmacologic Therapy for Hypertension' 2.16.840.1.113883.3.526.1577 and 'Chemotherapy Agents for
    # Advanced Cancer' 2.16.840.1.113762.1.4.1248.355 (canvas-plugins v2026 and cqframework ecqm-content-qicore-2025).
    ("197816", {"indapamide"}, "VSAC hypertension therapy, indapamide 2.5 MG Oral Tablet"),
    ("197951", {"methyclothiazide"}, "VSAC hypertension therapy, methyclothiazide 5 MG Oral Tablet"),
    ("484152", {"chlorothiazide"}, "VSAC hypertension therapy, chlorothiazide 500 MG Injection"),
    ("282486", {"bumetanide"}, "VSAC hypertension therapy, bumetanide 0.25 MG/ML Injectable Solution"),
    ("1736854", {"cisplatin"}, "VSAC chemotherapy agents + Synthea, cisplatin 50 MG Injection"),
    ("309311", {"cisplatin"}, "VSAC chemotherapy agents, cisplatin 1 MG/ML Injectable Solution"),
    ("686161", {"carboplatin"}, "NMDP/CIBMTR IG preparative regimens, carboplatin 10 MG/ML [Paraplatin]"),
    ("317127", {"minocycline"}, "VSAC pharyngitis, minocycline 100 MG Injection"),
    ("2099768", {"doxycycline"}, "VSAC pharyngitis, {42 (doxycycline hyclate 100 MG Oral Tablet) } Pack (GPCK)"),
    # PEDSnet Variable-Dictionary drug/loop_diuretic_rx.csv and drugs/rx_ppi.csv (RxNorm rows).
    ("4108", {"ethacrynic acid"}, "PEDSnet loop diuretics, ethacrynate sodium (PIN)"),
    ("4109", {"ethacrynic acid"}, "PEDSnet loop diuretics + RxNorm extract, ethacrynic acid (PIN)"),
    # RxNorm extract (davidanderson3/rxnorm-ingredients): the products listed under each ingredient record.
    ("198741", {"magnesium oxide"}, "RxNorm extract, magnesium oxide 400 MG Oral Tablet"),
    ("210958", {"magnesium oxide"}, "RxNorm extract, [Mag-Ox 400]"),
    ("1658244", {"magnesium sulfate"}, "RxNorm extract, 10 ML magnesium sulfate 500 MG/ML Injection"),
    ("311422", {"magnesium chloride"}, "RxNorm extract, magnesium chloride 200 MG/ML Injectable Solution"),
    ("829384", {"magnesium chloride"}, "RxNorm extract, magnesium chloride 535 MG DR tablet [Mag 64]"),
    ("1052760", {"magnesium citrate"}, "RxNorm extract, magnesium citrate 58.2 MG/ML Oral Solution"),
    ("311425", {"magnesium gluconate"}, "RxNorm extract, magnesium gluconate 500 MG Oral Tablet"),
    ("210918", {"magnesium lactate"}, "RxNorm extract, magnesium lactate 84 MG ER tablet [Mag-Tab]"),
    ("849497", {"magnesium glycinate"}, "RxNorm extract, magnesium glycinate 100 MG Oral Tablet"),
    ("359739", {"magnesium aspartate"}, "RxNorm extract, magnesium aspartate 615 MG DR tablet"),
    ("253017", {"magnesium hydroxide"}, "RxNorm extract, magnesium hydroxide 80 MG/ML Oral Suspension"),
    ("205337", {"magnesium carbonate"}, "RxNorm extract, magnesium carbonate 50 MG/ML Oral Suspension"),
    ("1734377", {"foscarnet"}, "RxNorm extract, 250 ML foscarnet sodium 24 MG/ML Injection"),
    ("861604", {"pentamidine"}, "RxNorm extract, pentamidine isethionate 300 MG Injection [Pentam]"),
    ("1657664", {"cetuximab"}, "RxNorm extract, 100 ML cetuximab 2 MG/ML Injection [Erbitux]"),
    ("1657722", {"panitumumab"}, "RxNorm extract, 20 ML panitumumab 20 MG/ML Injection"),
    ("905026", {"risedronate"}, "RxNorm extract + bisphosphonate cohort, risedronate sodium 35 MG [Actonel]"),
    ("904932", {"ibandronate"}, "RxNorm extract + bisphosphonate cohort, ibandronic acid 150 MG Oral Tablet"),
    ("197939", {"methazolamide"}, "RxNorm extract, methazolamide 25 MG Oral Tablet"),
    ("617325", {"ethacrynic acid"}, "PEDSnet loop diuretics, ethacrynate sodium 50 MG Injection"),
    ("854868", {"rabeprazole"}, "PEDSnet rx_ppi, rabeprazole sodium 20 MG DR tablet"),
    ("854870", {"rabeprazole"}, "PEDSnet rx_ppi, [Aciphex] 20 MG DR tablet"),
    ("902624", {"dexlansoprazole"}, "PEDSnet rx_ppi, [Dexilant] 30 MG DR capsule"),
    # Version 2 (2026-12-01): bictegravir (only in Biktarvy) and eltrombopag, from the RxNorm extract, B.json/E.json;
    # the 50 MG Biktarvy codes also in VSAC INSTI 2.16.840.1.113762.1.4.1146.1600. Emtricitabine and tenofovir
    # alafenamide are co-ingredients without a class.
    ("1999667", {"bictegravir"}, "RxNorm extract + VSAC INSTI, bictegravir 50 MG / emtricitabine / TAF tablet"),
    ("1999673", {"bictegravir"}, "RxNorm extract + VSAC INSTI, the same [Biktarvy]"),
    ("2584356", {"bictegravir"}, "RxNorm extract, bictegravir 30 MG / emtricitabine / TAF tablet [Biktarvy]"),
    ("825427", {"eltrombopag"}, "RxNorm extract, eltrombopag 50 MG Oral Tablet"),
    ("884619", {"eltrombopag"}, "RxNorm extract, eltrombopag 75 MG Oral Tablet [Promacta]"),
    ("2058980", {"eltrombopag"}, "RxNorm extract, eltrombopag 12.5 MG Powder for Oral Suspension"),
    ("2675195", {"eltrombopag"}, "RxNorm extract, eltrombopag 36 MG Oral Tablet (Alvaiz strength)"),
    # Magnesium laxatives, antacids and bowel preparations (RxNorm extract, M.json; aluminium hydroxide, simethicone,
    # calcium carbonate, famotidine and the bowel preparations' sulfates are co-ingredients without a class).
    ("210031", {"magnesium hydroxide"}, "RxNorm extract, Al/Mg hydroxide/simethicone suspension [Maalox Plus]"),
    ("243463", {"magnesium hydroxide"}, "RxNorm extract, Al/Mg hydroxide 40/40 MG/ML suspension, no simethicone"),
    ("211633", {"magnesium hydroxide"}, "RxNorm extract, Al/Mg hydroxide/simethicone chewable [Gelusil]"),
    ("688892", {"magnesium hydroxide"}, "RxNorm extract, CaCO3 / famotidine / Mg hydroxide [Pepcid Complete]"),
    ("845652", {"magnesium hydroxide"}, "RxNorm extract, magnesium hydroxide 160 MG/ML [Phillips Milk of Magnesia]"),
    ("404472", {"magnesium carbonate"}, "RxNorm extract, Al hydroxide / Mg carbonate suspension [Gaviscon]"),
    ("1086458", {"magnesium trisilicate"}, "RxNorm extract, Al hydroxide / Mg trisilicate [Gaviscon Chewable]"),
    ("1001690", {"magnesium sulfate"}, "RxNorm extract, Suprep Bowel Prep Kit (BPCK)"),
    ("2465556", {"magnesium sulfate"}, "RxNorm extract, Sutab tablets"),
    ("2641142", {"magnesium sulfate"}, "RxNorm extract, Suflave powder for oral solution"),
    ("1991509", {"magnesium oxide"}, "RxNorm extract, Clenpiq oral solution (magnesium oxide / citric acid)"),
]

# Brand names in free text (the drug's US brand), one per drug where a brand exists.
BRANDS = [
    ("Lasix 40 mg tablet", "furosemide"),
    ("Bumex 1 mg", "bumetanide"),
    ("Demadex 20mg", "torsemide"),
    ("Edecrin 25 mg", "ethacrynic acid"),
    ("Microzide 12.5 mg capsule", "hydrochlorothiazide"),
    ("Thalitone 15 mg", "chlorthalidone"),
    ("Diuril oral suspension", "chlorothiazide"),
    ("Lozol 2.5mg", "indapamide"),
    ("Zaroxolyn 5 mg", "metolazone"),
    ("Enduron 5 mg", "methyclothiazide"),
    ("Aldactone 25 mg", "spironolactone"),
    ("Inspra 50 mg", "eplerenone"),
    ("Midamor", "amiloride"),
    ("Dyrenium 50 mg capsule", "triamterene"),
    ("Kerendia 10 mg", "finerenone"),
    ("Diamox Sequels 500 mg", "acetazolamide"),
    ("Neptazane 50 mg", "methazolamide"),
    ("Prilosec OTC 20 mg", "omeprazole"),
    ("Nexium 40mg", "esomeprazole"),
    ("Prevacid SoluTab", "lansoprazole"),
    ("Dexilant 60 mg", "dexlansoprazole"),
    ("Protonix IV", "pantoprazole"),
    ("AcipHex 20 mg", "rabeprazole"),
    ("Platinol-AQ", "cisplatin"),
    ("Paraplatin infusion", "carboplatin"),
    ("Eloxatin 100 mg", "oxaliplatin"),
    ("Erbitux 100 mg/50 mL", "cetuximab"),
    ("Vectibix", "panitumumab"),
    ("Prograf 1 mg capsule", "tacrolimus"),
    ("Neoral 100 mg", "cyclosporine"),
    ("AmBisome 50 mg vial", "amphotericin b"),
    ("Foscavir", "foscarnet"),
    ("Pentam 300", "pentamidine"),
    ("Tobi Podhaler", "tobramycin"),
    ("Arikayce", "amikacin"),
    ("Vibramycin 100 mg", "doxycycline"),
    ("Minocin 50 mg", "minocycline"),
    ("Sumycin", "tetracycline"),
    ("Cipro 500", "ciprofloxacin"),
    ("Levaquin 750 mg", "levofloxacin"),
    ("Avelox 400 mg", "moxifloxacin"),
    ("Fosamax 70 mg weekly", "alendronate"),
    ("Actonel 35 mg", "risedronate"),
    ("Boniva 150 mg", "ibandronate"),
    ("Synthroid 50 mcg", "levothyroxine"),
    ("Tivicay 50 mg", "dolutegravir"),
    ("Biktarvy 1 tablet daily", "bictegravir"),
    ("Promacta 50 mg", "eltrombopag"),
    ("Alvaiz 36 mg", "eltrombopag"),
    ("Neurontin 300 mg", "gabapentin"),
    ("Mag-Ox 400", "magnesium oxide"),
    ("Milk of Magnesia", "magnesium hydroxide"),
    ("Slow-Mag", "magnesium chloride"),
    ("Epsom salt", "magnesium sulfate"),
    # Version 2 product names (RxNorm brand names in the extract unless noted): antacids, laxatives, supplements.
    ("Maalox Plus 30 mL", "magnesium hydroxide"),
    ("Mylanta 10 mL after meals", "magnesium hydroxide"),  # not in the extract: general clinical knowledge
    ("Gelusil chewable", "magnesium hydroxide"),
    ("Gaviscon liquid", "magnesium carbonate"),  # the US Gaviscon of the extract; UK Gaviscon has no magnesium
    ("Gaviscon Chewable", "magnesium trisilicate"),
    ("Citroma 300 mL", "magnesium citrate"),
    ("Mag-Tab SR 1 caplet", "magnesium lactate"),
    ("Suprep bowel prep kit", "magnesium sulfate"),
    ("Clenpiq", "magnesium oxide"),
]

UNRELATED = [
    ([CodeRef(RXNORM, "197604", "Digoxin 0.125 MG Oral Tablet")], None),
    ([], "Amoxicillin / Clavulanate 875 MG / 125 MG Oral Tablet"),
    ([], "amoxicillin/clavulanate"),
    ([], "Lisinopril 10 MG Oral Tablet"),
    ([CodeRef(RXNORM, "29046", "lisinopril")], None),
    ([], "zinc oxide 20% ointment"),
    ([], "oxide"),
    ([], "citrate"),
    ([], "potassium citrate 10 mEq"),
    ([], "Simvistatin 10 MG"),
    ([], None),
]


def classes_of(term: Terminology, codings: list[CodeRef], text: str | None) -> dict[str, frozenset[str]]:
    result = term.classify_medication(codings, text)
    return {i.name: i.classes for i in result.ingredients}


@pytest.mark.parametrize("drug_class", sorted(EXPECTED_MEMBERS))
def test_class_members_are_exactly_the_contract(term: Terminology, drug_class: str) -> None:
    assert set(term.class_members(drug_class)) == EXPECTED_MEMBERS[drug_class]


@pytest.mark.parametrize(("name", "drug_class"), ALL_INGREDIENTS)
def test_generic_name_in_free_text(term: Terminology, name: str, drug_class: str) -> None:
    found = classes_of(term, [], f"{name.title()} 10 MG Oral Tablet")
    assert drug_class in found[name]


@pytest.mark.parametrize(("text", "name"), BRANDS)
def test_brand_name_in_free_text(term: Terminology, text: str, name: str) -> None:
    found = term.classify_medication([], text)
    assert [i.name for i in found.ingredients] == [name]
    assert found.ingredients[0].matched_by.startswith("text '")


def test_every_drug_with_a_brand_is_covered_by_the_brand_table() -> None:
    # Organic magnesium salts are sold under their generic names; every other drug has a brand row above.
    organic = EXPECTED_MEMBERS["mg-salt-organic"]
    branded = {name for _, name in BRANDS}
    assert {n for n, _ in ALL_INGREDIENTS} - organic - {"gentamicin", "magnesium carbonate"} <= branded


@pytest.mark.parametrize(("code", "name", "source"), INGREDIENT_CODES)
def test_ingredient_code(term: Terminology, code: str, name: str, source: str) -> None:
    result = term.classify_medication([CodeRef(RXNORM, code, None)])
    assert [i.name for i in result.ingredients] == [name], source
    assert result.ingredients[0].rxnorm == code
    assert result.ingredients[0].matched_by.startswith(f"RxNorm {code}")


def test_every_listed_rxnorm_ingredient_code_has_a_sourced_row_above(term: Terminology) -> None:
    # A code added to a value set without a sourced row in INGREDIENT_CODES would go untested.
    listed = {rec.rxnorm: name for name, rec in term.indexes.ingredients.items() if rec.rxnorm}
    assert listed == {code: name for code, name, _ in INGREDIENT_CODES}


@pytest.mark.parametrize(("code", "names", "source"), PRODUCT_CODES)
def test_product_code(term: Terminology, code: str, names: set[str], source: str) -> None:
    result = term.classify_medication([CodeRef(RXNORM, code, None)])
    assert {i.name for i in result.ingredients} == names, source


def test_lasix_evidence_reads_like_the_contract(term: Terminology) -> None:
    result = term.classify_medication([CodeRef(RXNORM, "315971", "Lasix 40mg")], "Lasix 40mg")
    (furosemide,) = result.ingredients
    assert furosemide.matched_by == "RxNorm 315971 (Lasix 40mg) -> furosemide"
    assert result.classes == {"loop-diuretic"}
    assert furosemide.rxnorm == "4603"


@pytest.mark.parametrize(("codings", "text"), UNRELATED)
def test_unrelated_drugs_are_not_recognised(term: Terminology, codings: list[CodeRef], text: str | None) -> None:
    result = term.classify_medication(codings, text)
    assert result.ingredients == ()
    assert result.classes == frozenset()


def test_combination_text_counts_each_ingredient(term: Terminology) -> None:
    assert classes_of(term, [], "lisinopril / hydrochlorothiazide 20 MG / 12.5 MG") == {
        "hydrochlorothiazide": frozenset({"thiazide-diuretic"})
    }
    found = classes_of(term, [], "Triamterene/HCTZ 37.5-25 mg")
    assert found == {
        "triamterene": frozenset({"potassium-sparing-diuretic"}),
        "hydrochlorothiazide": frozenset({"thiazide-diuretic"}),
    }


def test_word_boundaries_and_case(term: Terminology) -> None:
    assert classes_of(term, [], "MAGNESIUM CITRATE oral solution") == {
        "magnesium citrate": frozenset({"mg-salt-organic"})
    }
    assert classes_of(term, [], "magnesium-oxide 400mg") == {"magnesium oxide": frozenset({"mg-salt-inorganic"})}
    assert classes_of(term, [], "Furosemidex") == {}


def test_display_is_used_when_text_is_absent(term: Terminology) -> None:
    found = term.classify_medication([CodeRef("http://example.org/local-formulary", "X1", "Pantoprazole 40 mg")])
    assert [i.name for i in found.ingredients] == ["pantoprazole"]
    assert found.ingredients[0].matched_by == "display 'Pantoprazole' -> pantoprazole"


def test_medication_ingredient_concepts_are_read(term: Terminology) -> None:
    # A contained Medication: local code, RxNorm ingredient (the brief's fixed fact: omeprazole IN 7646).
    found = term.classify_medication(
        [CodeRef("http://example.org/local", "A", None)],
        None,
        ingredient_concepts=[([CodeRef(RXNORM, "7646", "omeprazole")], None), ([], "magnesium stearate")],
    )
    assert [i.name for i in found.ingredients] == ["omeprazole"]


def test_rxnorm_oid_system_is_understood(term: Terminology) -> None:
    found = term.classify_medication([CodeRef("urn:oid:2.16.840.1.113883.6.88", "4603", None)])
    assert [i.name for i in found.ingredients] == ["furosemide"]


def test_atc_codes(term: Terminology) -> None:
    # C03CA01 furosemide (public French FHIR example); A02BC is the WHO ATC group of proton pump inhibitors.
    assert classes_of(term, [CodeRef(ATC, "C03CA01", None)], None) == {"furosemide": frozenset({"loop-diuretic"})}
    group_only = term.classify_medication([CodeRef(ATC, "A02BC", None)])
    assert group_only.classes == {"proton-pump-inhibitor"}
    assert "ATC group of proton-pump-inhibitor" in group_only.ingredients[0].matched_by


def test_elemental_magnesium_fraction(term: Terminology) -> None:
    # Hand calculation, IUPAC atomic weights: MgO 24.305 / (24.305 + 15.999) = 0.603;
    # Mg(OH)2 24.305 / 58.319 = 0.417; trimagnesium dicitrate 3 x 24.305 / 451.1 = 0.162.
    # NIH ODS magnesium fact sheet: magnesium oxide is about 60% elemental magnesium.
    found = {
        i.name: i.elemental_mg_fraction
        for i in term.classify_medication([], "magnesium oxide, magnesium hydroxide, magnesium citrate").ingredients
    }
    assert found == {
        "magnesium oxide": pytest.approx(0.603, abs=0.001),
        "magnesium hydroxide": pytest.approx(0.417, abs=0.001),
        "magnesium citrate": pytest.approx(0.162, abs=0.001),
    }
    assert term.classify_medication([], "furosemide").ingredients[0].elemental_mg_fraction is None


def test_every_salt_carries_a_fraction(term: Terminology) -> None:
    for drug_class in ("mg-salt-organic", "mg-salt-inorganic"):
        for name in term.class_members(drug_class):
            fraction = term.indexes.ingredients[name].elemental_mg_fraction
            assert fraction is not None, name
            assert 0.0 < fraction < 1.0, name


def test_lookups_use_the_indexes_built_at_start_up(term: Terminology, monkeypatch: pytest.MonkeyPatch) -> None:
    # Issue 4: indexes are built once; a lookup never reads a value-set file again. (How fast a lookup is, is
    # measured by bench/terminology.py, not asserted here.)
    def no_file_access(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"file opened during a lookup: {args!r}")

    monkeypatch.setattr("builtins.open", no_file_access)
    monkeypatch.setattr("pathlib.Path.open", no_file_access)
    monkeypatch.setattr("pathlib.Path.read_text", no_file_access)
    assert term.classify_medication([CodeRef(RXNORM, "315971", "Lasix 40mg")], "Lasix 40mg").classes == {
        "loop-diuretic"
    }
    assert term.classify_medication([], "Prilosec OTC 20 mg").classes == {"proton-pump-inhibitor"}


def test_magnesium_without_a_named_salt_is_a_supplement_of_unstated_salt() -> None:
    from terminology import default_terminology

    terminology = default_terminology()
    plain = terminology.classify_medication([], "Magnesium 250 mg tablet")
    assert [i.name for i in plain.ingredients] == ["magnesium (salt not stated)"]
    assert plain.classes == frozenset({"mg-salt-unspecified"})
    # A named salt always wins (longest name first): never both.
    for text, salt_class in (("Magnesium citrate 150 mg", "mg-salt-organic"), ("Mag-Ox 400", "mg-salt-inorganic")):
        assert terminology.classify_medication([], text).classes == frozenset({salt_class})


def test_every_rxnorm_code_reads_as_the_ingredients_it_is_listed_for(term: Terminology) -> None:
    # A guard against a code pasted under the wrong drug: each RxNorm code's own name (as its source prints it)
    # must, read as free text, name exactly the ingredients the value set lists for it.
    mismatched = []
    for (system, code), entry in term.indexes.drug_codes.items():
        if system != RXNORM:
            continue
        assert entry.display, f"RxNorm {code} has no name"
        ours = {name for name in entry.ingredients if name in term.indexes.ingredients}
        by_text = {i.name for i in term.classify_medication([], entry.display).ingredients}
        # Co-ingredients outside our sets (lisinopril in lisinopril / HCTZ) are listed for the record only.
        others_named = all(name in entry.display.lower() for name in set(entry.ingredients) - ours)
        if by_text != ours or not others_named:
            mismatched.append((code, entry.display, sorted(entry.ingredients), sorted(by_text)))
    assert mismatched == []
