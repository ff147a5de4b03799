"""smartbin edge: the on-device daemon (camera -> item detector -> LiteRT -> flap -> counts/MQTT).

Importing ``edge`` is cheap and never imports TensorFlow or Keras; outside libraries
(picamera2, gpiozero, paho-mqtt, ai-edge-litert, OpenCV) are imported by the one module
that uses each, when that module is used.

Usage:
    python -m edge run --config firmware_config/smartbin.yaml --replay photos/ --mock-gpio
"""

__version__ = "0.1.0"
