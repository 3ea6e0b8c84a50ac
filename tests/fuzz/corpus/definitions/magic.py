%load_ext cellar
%cellar restore --session abc
