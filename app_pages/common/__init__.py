"""Streamlit glue shared by the app's pages, one module per concern (this package imports none of
them itself; each page imports what it uses):

  state         everything kept in st.session_state: the current image, the explanations, per-session
                memos, and widget values kept across pages (persistent)
  model_picker  the sidebar's checkpoint picker, the model (st.cache_resource), its name, and the notice
                shown while the picture is unlike what the model was trained on
  widgets       the page style, literal text (md), a figure with its description (show), the current
                image's strip, the decoding controls
  address_bar   a link in the address bar applied to the app, and the view written back (vizcap.links parses)

Layering: state <- model_picker <- widgets <- address_bar. Everything shown comes from `vizcap`;
what computes without Streamlit (checkpoint files, what the model saw, uploads) lives there too.
"""
