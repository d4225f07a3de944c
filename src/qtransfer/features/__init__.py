"""The one pipeline from images to features: dataset + backbone -> cached, memory-mapped features."""
