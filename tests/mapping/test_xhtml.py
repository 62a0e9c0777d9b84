"""HTML -> XHTML-IM (XEP-0071 Recommended Profile) and its text fallback."""

from __future__ import annotations

import pytest
from lxml import etree

from sipxmpp.mapping import MappingRefused, StanzaRefused, html_to_xhtml_im, sanitize_xhtml_im
from sipxmpp.mapping.xhtml import (
    ALLOWED_ATTRIBUTES,
    MAX_HTML_INPUT_BYTES,
    MAX_XHTML_DEPTH,
    STYLE_PROPERTIES,
    XHTML_NS,
    xml_safe,
)

B = '<body xmlns="http://www.w3.org/1999/xhtml">'

CASES = [
    # (html, xhtml inner, text)
    ("hi!", "hi!", "hi!"),
    ("<p style='font-weight:bold'>hi!</p>", '<p style="font-weight: bold">hi!</p>', "hi!"),
    ("<b>bold</b> <i>it</i> <u>u</u> <s>s</s>",
     '<span style="font-weight: bold">bold</span> <span style="font-style: italic">it</span> '
     '<span style="text-decoration: underline">u</span> '
     '<span style="text-decoration: line-through">s</span>',
     "bold it u s"),
    ("line<br>break", "line<br/>break", "line\nbreak"),
    ("<p>one</p><p>two</p>", "<p>one</p><p>two</p>", "one\ntwo"),
    ("<ul><li>a</li><li>b</li></ul>", "<ul><li>a</li><li>b</li></ul>", "- a\n- b"),
    ("<ol><li>a</li><li>b</li></ol>", "<ol><li>a</li><li>b</li></ol>", "1. a\n2. b"),
    ("<ol><li>a<ul><li>x</li></ul></li></ol>", "<ol><li>a<ul><li>x</li></ul></li></ol>",
     "1. a\n- x"),
    ("<h1>Title</h1>", '<p style="font-size: xx-large; font-weight: bold">Title</p>', "Title"),
    ("<blockquote>q</blockquote>", '<p style="margin-left: 5%">q</p>', "q"),
    ("<div>x<div>y</div></div>", "<p>x<br/>y</p>", "x\ny"),
    ("<pre>a  b\n  c</pre>", '<p style="font-family: monospace">a\u00a0\u00a0b<br/>\u00a0\u00a0c</p>',
     "a  b\n  c"),
    ("<table><tr><td>1</td><td>2</td></tr><tr><td>3</td></tr></table>",
     "<p>1 2 </p><p>3 </p>", "1 2\n3"),
    ("<font color='#ff0000' face='Comic'>red</font>", '<span style="color: #ff0000">red</span>', "red"),
    ("<font color='expression(alert(1))'>x</font>", "x", "x"),
    ("<a href='https://example.org/'>site</a>", '<a href="https://example.org/">site</a>',
     "site <https://example.org/>"),
    ("<a href='https://example.org/'>https://example.org/</a>",
     '<a href="https://example.org/">https://example.org/</a>', "https://example.org/"),
    ("<a href='xmpp:juliet@example.com'>juliet@example.com</a>",
     '<a href="xmpp:juliet@example.com">juliet@example.com</a>', "juliet@example.com"),
    ("<a href='https://x.example/' type='text/html' target='_blank' onclick='x()'>t</a>",
     '<a href="https://x.example/" type="text/html">t</a>', "t <https://x.example/>"),
    ("<img src='https://x.example/a.png' alt='A cat' width='100' height='50' onerror='x()'>",
     '<img src="https://x.example/a.png" alt="A cat" width="100" height="50"/>', "[A cat]"),
    ("<img src='cid:sha1+8f35fef110ffc5df08d579a50083ff9308fb6242@bob.xmpp.org' alt=''>",
     '<img src="cid:sha1+8f35fef110ffc5df08d579a50083ff9308fb6242@bob.xmpp.org" alt=""/>',
     "[cid:sha1+8f35fef110ffc5df08d579a50083ff9308fb6242@bob.xmpp.org]"),
    ("<img src='https://x.example/a.png' alt='a' width='100px;evil'>",
     '<img src="https://x.example/a.png" alt="a"/>', "[a]"),
    ("<p>Hello &amp; &lt;bye&gt; &eacute;</p>", "<p>Hello &amp; &lt;bye&gt; é</p>", "Hello & <bye> é"),
    ("<ul> <li>a</li> text <b>bold</b> </ul>",
     '<ul><li>a</li><li> text </li><li><span style="font-weight: bold">bold</span></li></ul>',
     "- a\n- text\n- bold"),
    ("<p><ul><li>in p</li></ul></p>", "<ul><li>in p</li></ul>", "- in p"),
    ("<span>x<p>para in span</p>y</span>", "x<p>para in span</p>y", "x\npara in span\ny"),
    ("<center>c</center>", '<p style="text-align: center">c</p>', "c"),
    ("a<hr>b", "a<br/>b", "a\nb"),
]  # fmt: skip


@pytest.mark.parametrize(("html", "inner", "text"), CASES)
def test_html_to_xhtml_im_table(html: str, inner: str, text: str) -> None:
    result = html_to_xhtml_im(html)
    expected = f"{B}{inner}</body>" if inner else B[:-1] + "/>"
    assert result.xhtml == expected
    assert result.text == text


DANGEROUS = [
    "<script>alert(1)</script>ok",
    "<SCRIPT SRC=//evil.example/x.js></SCRIPT>ok",
    "<style>body{background:url(javascript:x)}</style>ok",
    "<iframe src='https://evil.example'>inner</iframe>ok",
    "<object data='x.swf'><param name=a value=b>fallback</object>ok",
    "<svg><script>alert(1)</script></svg>ok",
    "<math><mi>x</mi></math>ok",
    "<a href='javascript:alert(1)'>ok</a>",
    "<a href=' JaVa\tScRiPt:alert(1)'>ok</a>",
    "<a href='data:text/html,<script>x</script>'>ok</a>",
    "<a href='vbscript:x'>ok</a>",
    "<a href='/relative'>ok</a>",
    "<img src='javascript:alert(1)' alt='ok'>",
    "<img src='data:image/png;base64,AAAA' alt='ok'>",
    "<img src='file:///etc/passwd' alt='ok'>",
    "<p onclick='alert(1)' onmouseover='x' class='c' id='i' title='t'>ok</p>",
    "<p style='background:url(javascript:alert(1))'>ok</p>",
    "<p style='color: expression(alert(1))'>ok</p>",
    "<p style='position:fixed;top:0;width:100%;height:100%'>ok</p>",
    "<p style='color:red\\;background:url(x)'>ok</p>",
    "<p style='font-family: \"a\" /* */'>ok</p>",
    "<form action='https://evil.example'><input name=p value=x><button>b</button>ok</form>",
    "<textarea>secret</textarea>ok",
    "<select><option>o</option></select>ok",
    "<video src=x><track src=y></video>ok",
    "<head><title>t</title><meta http-equiv='refresh' content='0;url=x'></head>ok",
    "<base href='https://evil.example/'>ok",
    "<link rel=stylesheet href=x>ok",
    "<template><b>t</b></template>ok",
    "<noscript>n</noscript>ok",
    "<!-- comment -->ok",
    "<?php echo 1 ?>ok",
    "<![CDATA[x]]>ok",
    "<p xmlns:x='urn:x' x:foo='bar'>ok</p>",
]


def _profile_only(xhtml: str) -> None:
    """Every element and attribute is in the Recommended Profile; styles are clean."""
    root = etree.fromstring(xhtml)
    assert root.tag == f"{{{XHTML_NS}}}body"
    for element in root.iter():
        assert isinstance(element.tag, str)
        qname = etree.QName(element)
        assert qname.namespace == XHTML_NS
        allowed = ALLOWED_ATTRIBUTES[qname.localname]
        for name, raw_value in element.attrib.items():
            value = str(raw_value)
            assert name in allowed, (qname.localname, name)
            if name == "style":
                for declaration in value.split("; "):
                    prop, _, val = declaration.partition(": ")
                    assert prop in STYLE_PROPERTIES
                    assert "url" not in val and "(" not in val.replace("rgb(", "")
            if name in ("href", "src"):
                assert value.split(":")[0] in {
                    "http", "https", "xmpp", "mailto", "sip", "sips", "im", "pres", "tel", "cid"
                }  # fmt: skip


@pytest.mark.parametrize("html", DANGEROUS)
def test_dangerous_html_never_passes(html: str) -> None:
    result = html_to_xhtml_im(html)
    _profile_only(result.xhtml)
    lowered = result.xhtml.lower()
    for needle in ("script", "alert", "evil", "iframe", "expression", "onclick", "secret",
                   "javascript", "data:", "file:", "url(", "<!--", "php", "position"):  # fmt: skip
        assert needle not in lowered
    assert "ok" in result.text
    assert "alert" not in result.text and "secret" not in result.text


@pytest.mark.parametrize(
    "html",
    ["", "   ", "<html></html>", "<head><title>only head</title></head>", "<!-- only -->"],
)
def test_empty_input_gives_empty_body(html: str) -> None:
    result = html_to_xhtml_im(html)
    assert (result.xhtml, result.text) == (B[:-1] + "/>", "")


def test_style_keeps_only_recommended_properties() -> None:
    result = html_to_xhtml_im(
        "<span style='COLOR: Red; font-size:12pt; display:none; margin-left: 5%;"
        ' font-family: "Comic Sans", serif; background-color: rgb(1, 2, 3); float:left\'>x</span>'
    )
    assert result.xhtml == (
        f'{B}<span style="color: Red; font-size: 12pt; margin-left: 5%; '
        'font-family: &quot;Comic Sans&quot;, serif; background-color: rgb(1, 2, 3)">x</span></body>'
    )


def test_deep_nesting_is_flattened() -> None:
    depth = MAX_XHTML_DEPTH * 4
    html = "<span style='color:red'>" * depth + "deep<script>x</script>" + "</span>" * depth
    result = html_to_xhtml_im(html)
    _profile_only(result.xhtml)
    assert result.text == "deep"
    root = etree.fromstring(result.xhtml)
    assert max(len(list(element.iterancestors())) for element in root.iter()) <= MAX_XHTML_DEPTH


@pytest.mark.parametrize("depth", [300, 5000])
def test_pathological_nesting_keeps_the_text(depth: int) -> None:
    # Deeper than libxml2's limit of 256: the parser gives up, the words survive.
    html = (
        "<div><b>" * (depth // 2)
        + "x &amp; y<script>alert(1)</script>"
        + "</b></div>" * (depth // 2)
    )
    result = html_to_xhtml_im(html)
    _profile_only(result.xhtml)
    assert result.text == "x & y"
    assert result.xhtml == f"{B}x &amp; y</body>"


def test_control_characters_never_reach_the_xml() -> None:
    result = html_to_xhtml_im("<p title='\x01'>a\x0cb&#1;c</p>")
    etree.fromstring(result.xhtml)  # well-formed
    assert "\x0c" not in result.text and "\x01" not in result.text


def test_size_limit() -> None:
    with pytest.raises(MappingRefused) as exc:
        html_to_xhtml_im("x" * (MAX_HTML_INPUT_BYTES + 1))
    assert exc.value.status == 413


# --------------------------------------------------------------------------- XMPP side


def test_sanitize_xhtml_im_wrapper_and_body() -> None:
    wrapped = (
        "<html xmlns='http://jabber.org/protocol/xhtml-im'>"
        "<body xmlns='http://www.w3.org/1999/xhtml'><p style='font-weight:bold'>hi "
        "<script>x</script><foo xmlns='urn:x'>no</foo><span class='c'>there</span></p>"
        "</body></html>"
    )
    result = sanitize_xhtml_im(wrapped)
    # The class-only span carries nothing of the profile, so only its text is kept.
    assert result.xhtml == f'{B}<p style="font-weight: bold">hi there</p></body>'
    assert result.text == "hi there"
    bare = sanitize_xhtml_im("<body xmlns='http://www.w3.org/1999/xhtml'>a<br/>b</body>")
    assert (bare.xhtml, bare.text) == (f"{B}a<br/>b</body>", "a\nb")


@pytest.mark.parametrize(
    "xml",
    [
        "not xml",
        "<body>no namespace</body>",
        "<html xmlns='http://jabber.org/protocol/xhtml-im'/>",
        "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>"
        "<body xmlns='http://www.w3.org/1999/xhtml'>&e;</body>",
    ],
)
def test_sanitize_xhtml_im_refusals(xml: str) -> None:
    with pytest.raises(StanzaRefused) as exc:
        sanitize_xhtml_im(xml)
    assert exc.value.error.condition == "not-acceptable"


def test_sanitize_xhtml_im_size_limit() -> None:
    with pytest.raises(StanzaRefused) as exc:
        sanitize_xhtml_im(
            "<body xmlns='http://www.w3.org/1999/xhtml'>" + "x" * MAX_HTML_INPUT_BYTES
        )
    assert exc.value.error.condition == "policy-violation"


def test_xml_safe() -> None:
    assert xml_safe("ok\t\n\r") == "ok\t\n\r"
    assert xml_safe("a\x00b\ud800c\ufffe") == "a\ufffdb\ufffdc\ufffd"
