"""Helpers for tests, benchmarks and the demo; not needed to predict memorability.

* :mod:`amnetvid_sk.testing.clips`: small real videos written with PyAV
  (:func:`~amnetvid_sk.testing.clips.write_clip`: H.264/MP4, VP9/WebM, variable
  frame rate, display rotation) whose frames show their own number
  (:func:`~amnetvid_sk.testing.clips.numbered_frames`,
  :func:`~amnetvid_sk.testing.clips.read_number`), so a test can check that the
  decoder returned exactly the frames it meant to.
* :mod:`amnetvid_sk.testing.synthetic`: synthetic data sets whose label lies in the
  order of the frames, so that only a sequence model can see it
  (:func:`~amnetvid_sk.testing.synthetic.make_moving_peak_dataset`,
  :func:`~amnetvid_sk.testing.synthetic.make_score_order_dataset`), and
  :func:`~amnetvid_sk.testing.synthetic.write_synthetic_store`, which writes such a set
  into a feature store as extraction would.
* :mod:`amnetvid_sk.testing.s3_server`: a real S3 server on localhost (SeaweedFS's ``weed``,
  the ``s3`` extra), :class:`~amnetvid_sk.testing.s3_server.S3Server`, for the S3 store's tests
  and ``bench/bench_store_scale.py --s3``.

Import the modules themselves (``from amnetvid_sk.testing.clips import write_clip``);
this package imports neither, so the clips come without the store and the synthetic
sets only with what they use.
"""
