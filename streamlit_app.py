"""vizcap, the app: `streamlit run streamlit_app.py`.

The entry point runs first on every address: it draws what every page shares (the style and the
sidebar's model picker) once, then st.navigation runs the page the address names. Pages only draw
their page; they live in app_pages/, their shared glue in app_pages/common/. The folder is not named
pages/: a fresh Streamlit process that finds a pages/ folder next to this file runs a first visit to
/explorer as that file alone, under Streamlit's automatic page list, until some session has run
st.navigation (README, "Project layout").

Environment: VIZCAP_CHECKPOINT=DIR opens that checkpoint directory by default (tests and demos use
a tiny one); otherwise the shipped ShapeScenes model is used.
"""

from __future__ import annotations

import streamlit as st

from app_pages.common import model_picker, widgets

st.set_page_config(page_title="vizcap", page_icon="🔍", layout="wide")
# To add a page: its file in app_pages/ and one line here (the title in the sidebar, the address).
PAGES = [
    st.Page("app_pages/home.py", title="Home", icon=":material/home:", default=True),
    st.Page("app_pages/explorer.py", title="Caption & attention explorer", icon=":material/visibility:",
            url_path="explorer"),
    st.Page("app_pages/decoding_lab.py", title="Decoding lab", icon=":material/casino:", url_path="decoding_lab"),
    st.Page("app_pages/how_it_works.py", title="How it works", icon=":material/settings:", url_path="how_it_works"),
    st.Page("app_pages/training_and_trust.py", title="Training & trust", icon=":material/monitoring:",
            url_path="training_and_trust"),
    st.Page("app_pages/compare.py", title="Compare two models", icon=":material/compare:", url_path="compare"),
    st.Page("app_pages/lesson.py", title="Lesson (10 minutes)", icon=":material/school:", url_path="lesson"),
]
page = st.navigation(PAGES)
st.html(widgets.STYLE)
model_picker.checkpoint_picker()
page.run()
